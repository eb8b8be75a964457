"""Demo data: one workspace of realistic, reproducible CRM records to explore the API with.

Everything except primary keys and password hashes depends only on ``seed``: the same seed
gives the same names, emails, amounts, timestamps and counts on any machine and any day
(times are spread over the 18 months before a fixed base date, not before "now").

Seed rows are not a user's change, so no audit rows and no events are written. Rows are
bulk-inserted (a dozen statements in all); the caller commits.

Emails and phone numbers are fictitious on purpose: every email domain is under the
reserved ``.example`` TLD (RFC 2606) and phone numbers use the ranges set aside for
fiction where a country has one, so nothing in the demo reaches a real person.
"""

from __future__ import annotations

import asyncio
import random
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, exists, insert, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import (
    Activity,
    ActivityType,
    Base,
    Channel,
    Company,
    Conversation,
    ConversationStatus,
    Customer,
    Deal,
    DealStatus,
    LifecycleStage,
    Message,
    MessageAuthorType,
    Order,
    OrderStatus,
    Pipeline,
    Product,
    Role,
    Stage,
    User,
    Workspace,
    uuid7,
)
from crm_graphql.services import fields
from crm_graphql.services.auth import hash_password
from crm_graphql.services.products import lines_from_items

# The demo's "today" by default (tests and the bench's data set: fixed, so their figures
# and dates repeat): all history lies in the 18 months before it. The CLI's demo
# (`make run`, `seed-demo`) is anchored on the day it is loaded instead (``today``).
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY = timedelta(days=548)
START_TIME = BASE_TIME - HISTORY


def today() -> datetime:
    """The start of the current UTC day: the anchor of a demo loaded now, so that its
    dashboard's last 12 months, its inbox and its open tasks are current (the same seed
    gives the same data, shifted to the day)."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


DEFAULT_EMAIL_DOMAIN = "demo.example"

COMPANY_COUNT = 40
CUSTOMER_COUNT = 200
DEAL_COUNT = 150
RENEWAL_DEAL_COUNT = 40
ACTIVITY_COUNT = 1000
ORDER_COUNT = 300
CONVERSATION_COUNT = 20


@dataclass(frozen=True)
class DemoUser:
    local_part: str
    password: str
    role: Role
    name: str


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "demo-admin", Role.ADMIN, "Alex Morgan"),
    DemoUser("manager", "demo-manager", Role.MANAGER, "Maya Fischer"),
    DemoUser("agent", "demo-agent", Role.AGENT, "Sam Carter"),
    DemoUser("agent2", "demo-agent", Role.AGENT, "Priya Nair"),
    DemoUser("agent3", "demo-agent", Role.AGENT, "Lukas Becker"),
    DemoUser("agent4", "demo-agent", Role.AGENT, "Chloé Martin"),
    DemoUser("viewer", "demo-viewer", Role.VIEWER, "Victor Hale"),
)


def demo_logins(email_domain: str = DEFAULT_EMAIL_DOMAIN) -> list[tuple[str, str, Role]]:
    """(email, password, role) of every demo user for the given email domain."""
    domain = email_domain.strip().lower()
    return [(f"{u.local_part}@{domain}", u.password, u.role) for u in DEMO_USERS]


DEMO_LOGINS: list[tuple[str, str, Role]] = demo_logins()


@dataclass(frozen=True)
class DemoSummary:
    workspace_id: uuid.UUID
    workspace_name: str
    counts: dict[str, int]
    logins: list[tuple[str, str, Role]] = field(default_factory=list)


async def database_is_empty(session: AsyncSession) -> bool:
    """True when the database has no workspace yet (a first start: offer demo data)."""
    return not await session.scalar(select(exists().select_from(Workspace)))


async def seed_demo(
    session: AsyncSession,
    *,
    seed: int = 42,
    workspace_name: str = "Demo",
    email_domain: str = DEFAULT_EMAIL_DOMAIN,
    now: datetime = BASE_TIME,
) -> DemoSummary:
    """Create a workspace named ``workspace_name`` filled with demo data, its history in
    the 18 months before ``now``.

    User logins are ``<role>@<email_domain>`` (see ``demo_logins``); user emails are unique
    across the server, so a second demo workspace in one database needs another domain.
    Does not commit.
    """
    domain = email_domain.strip().lower()
    passwords = list(dict.fromkeys(u.password for u in DEMO_USERS))
    # argon2 is deliberately slow: hash each distinct password once, off the event loop.
    hashes = dict(
        zip(
            passwords,
            await asyncio.gather(*(asyncio.to_thread(hash_password, p) for p in passwords)),
            strict=True,
        )
    )
    data = _DemoBuilder(random.Random(seed), uuid7(), domain, hashes, now).build()

    await session.execute(
        insert(Workspace).values(
            id=data.workspace_id,
            name=workspace_name.strip(),
            created_at=now - HISTORY - timedelta(days=30),
            updated_at=now - HISTORY - timedelta(days=30),
        )
    )
    tables: list[tuple[Table, list[dict[str, Any]]]] = [
        (_table(User), data.users),
        (_table(Company), data.companies),
        (_table(Customer), data.customers),
        (_table(Pipeline), data.pipelines),
        (_table(Stage), data.stages),
        (_table(Deal), data.deals),
        (_table(Activity), data.activities),
        (_table(Product), data.products),
        (_table(Order), data.orders),
        (_table(Conversation), data.conversations),
        (_table(Message), data.messages),
    ]
    for table, rows in tables:
        # Core executemany: every row has the same keys, so each table is one batched
        # INSERT (the ORM bulk path would split batches wherever a value is None).
        if rows:
            await session.execute(insert(table), rows)
    # Order lines from the orders' items, linked to the catalogue by SKU: the same path
    # as the upgrade of existing data (migration 0015).
    await lines_from_items(session, workspace_id=data.workspace_id)
    return DemoSummary(
        workspace_id=data.workspace_id,
        workspace_name=workspace_name.strip(),
        counts={table.name: len(rows) for table, rows in tables},
        logins=demo_logins(domain),
    )


# --- reference data -------------------------------------------------------------------

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Sophia", "Mateo", "Mia", "Elias",
    "Hannah", "Leon", "Zoë", "Finn", "Chloé", "Jonas", "Isabella", "Hugo", "Amelia", "Oscar",
    "Léa", "Felix", "Grace", "Arthur", "Sofia", "Jakob", "Ines", "Daniel", "Marta", "Tobias",
    "Aisha", "Omar", "Mei", "Kenji", "Ana", "José", "Lucía", "Pablo", "Giulia", "Marco",
    "Fatima", "Yusuf", "Nora", "Henrik", "Freya", "Björn", "Emily", "James", "Charlotte",
    "William", "Ruth", "Samuel", "Clara", "Max", "Eva", "Jan", "Anouk", "Daan", "Priya", "Raj",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Martinez",
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann",
    "Dubois", "Moreau", "Laurent", "Lefèvre", "Bernard", "Jansen", "de Vries", "van Dijk",
    "Bakker", "Visser", "García", "Fernández", "López", "Sánchez", "Rossi", "Bianchi",
    "Ferrari", "Taylor", "Wilson", "Evans", "Thomas", "Roberts", "Walker", "Wright",
    "Keller", "Meier", "Huber", "Brunner", "Kim", "Chen", "Nguyen", "Patel", "Singh", "Khan",
    "O'Brien", "Murphy", "Novak", "Kowalski", "Andersson", "Nilsson", "Costa", "Silva",
)  # fmt: skip

COMPANY_PREFIXES = (
    "Northwind", "Bluefin", "Crescent", "Ironwood", "Lumen", "Silverline", "Brightpath",
    "Evergreen", "Harborview", "Summit", "Quantum", "Redwood", "Nimbus", "Atlas", "Cobalt",
    "Meridian", "Pinecrest", "Skyward", "Vertex", "Willow", "Alder", "Beacon", "Cedar",
    "Driftwood", "Ember", "Falcon", "Granite", "Horizon", "Juniper", "Keystone", "Larkspur",
    "Maple", "Nova", "Orchid", "Polaris", "Quarry", "Riverstone", "Sable", "Tidewater",
    "Verdant", "Wavecrest", "Zephyr", "Aurora", "Bramble", "Copperfield", "Dunmore",
    "Elmstead", "Foxglove",
)  # fmt: skip
# (word in the company name, industry)
COMPANY_KINDS = (
    ("Logistics", "Logistics"),
    ("Analytics", "Software"),
    ("Systems", "Software"),
    ("Health", "Healthcare"),
    ("Foods", "Food & Beverage"),
    ("Robotics", "Manufacturing"),
    ("Industries", "Manufacturing"),
    ("Energy", "Energy"),
    ("Labs", "Biotechnology"),
    ("Retail", "Retail"),
    ("Media", "Media"),
    ("Capital", "Financial Services"),
    ("Travel", "Travel & Hospitality"),
    ("Architects", "Construction"),
    ("Learning", "Education"),
)
COMPANY_TAGS = (
    "enterprise", "mid-market", "smb", "partner", "reseller", "strategic", "key-account",
    "public-sector", "expansion",
)  # fmt: skip
FREE_MAIL_DOMAINS = ("mailbox.example", "postbox.example", "inbox.example", "webmail.example")


@dataclass(frozen=True)
class Country:
    code: str
    currency: str
    legal_suffix: str
    language: str
    weight: int
    # (city, region, postal code pattern with # for a random digit, timezone)
    cities: tuple[tuple[str, str, str, str], ...]
    streets: tuple[str, ...]
    street_format: str  # {name} and {number}
    phone_format: str  # # = random digit


COUNTRIES: tuple[Country, ...] = (
    Country(
        "US", "USD", "Inc.", "en", 35,
        (
            ("New York", "NY", "100##", "America/New_York"),
            ("Chicago", "IL", "606##", "America/Chicago"),
            ("San Francisco", "CA", "941##", "America/Los_Angeles"),
            ("Austin", "TX", "787##", "America/Chicago"),
            ("Seattle", "WA", "981##", "America/Los_Angeles"),
            ("Boston", "MA", "021##", "America/New_York"),
            ("Denver", "CO", "802##", "America/Denver"),
        ),
        ("Main St", "Oak Ave", "Maple Dr", "Market St", "Pine St", "Elm St", "Lake Shore Dr",
         "Washington Ave", "Cedar Ln", "Park Ave"),
        "{number} {name}",
        "+1 ### 555-01##",
    ),
    Country(
        "DE", "EUR", "GmbH", "de", 22,
        (
            ("Berlin", "Berlin", "10###", "Europe/Berlin"),
            ("Munich", "Bavaria", "80###", "Europe/Berlin"),
            ("Hamburg", "Hamburg", "20###", "Europe/Berlin"),
            ("Cologne", "North Rhine-Westphalia", "50###", "Europe/Berlin"),
            ("Frankfurt am Main", "Hesse", "60###", "Europe/Berlin"),
        ),
        ("Hauptstraße", "Bahnhofstraße", "Gartenweg", "Schillerstraße", "Lindenallee",
         "Goethestraße", "Am Markt", "Bergstraße"),
        "{name} {number}",
        "+49 30 23125###",
    ),
    Country(
        "GB", "GBP", "Ltd", "en", 12,
        (
            ("London", "England", "EC1A #AA", "Europe/London"),
            ("Manchester", "England", "M# #AB", "Europe/London"),
            ("Edinburgh", "Scotland", "EH# #AD", "Europe/London"),
            ("Bristol", "England", "BS# #AE", "Europe/London"),
        ),
        ("High Street", "Station Road", "Church Lane", "Victoria Road", "Kings Road",
         "Mill Lane"),
        "{number} {name}",
        "+44 7700 900###",
    ),
    Country(
        "FR", "EUR", "SAS", "fr", 10,
        (
            ("Paris", "Île-de-France", "750##", "Europe/Paris"),
            ("Lyon", "Auvergne-Rhône-Alpes", "6900#", "Europe/Paris"),
            ("Bordeaux", "Nouvelle-Aquitaine", "3300#", "Europe/Paris"),
            ("Nantes", "Pays de la Loire", "4400#", "Europe/Paris"),
        ),
        ("rue de la Paix", "avenue Victor Hugo", "rue du Moulin", "boulevard Voltaire",
         "rue des Lilas", "place de la République"),
        "{number} {name}",
        "+33 1 99 00 ## ##",
    ),
    Country(
        "NL", "EUR", "B.V.", "nl", 8,
        (
            ("Amsterdam", "North Holland", "10## AB", "Europe/Amsterdam"),
            ("Rotterdam", "South Holland", "30## CD", "Europe/Amsterdam"),
            ("Utrecht", "Utrecht", "35## EF", "Europe/Amsterdam"),
        ),
        ("Kerkstraat", "Dorpsstraat", "Prinsengracht", "Stationsweg", "Molenweg"),
        "{name} {number}",
        "+31 20 7## ####",
    ),
    Country(
        "ES", "EUR", "S.L.", "es", 7,
        (
            ("Madrid", "Community of Madrid", "280##", "Europe/Madrid"),
            ("Barcelona", "Catalonia", "080##", "Europe/Madrid"),
            ("Valencia", "Valencian Community", "460##", "Europe/Madrid"),
        ),
        ("Calle Mayor", "Gran Vía", "Calle del Sol", "Avenida de la Constitución",
         "Paseo del Prado"),
        "{name}, {number}",
        "+34 91 ### ## ##",
    ),
    Country(
        "CH", "CHF", "AG", "de", 6,
        (
            ("Zurich", "Zurich", "80##", "Europe/Zurich"),
            ("Geneva", "Geneva", "12##", "Europe/Zurich"),
            ("Basel", "Basel-Stadt", "40##", "Europe/Zurich"),
        ),
        ("Bahnhofstrasse", "Seestrasse", "Dorfstrasse", "Rue du Rhône", "Kirchgasse"),
        "{name} {number}",
        "+41 44 ### ## ##",
    ),
)  # fmt: skip

LIFECYCLE_WEIGHTS = (
    (LifecycleStage.SUBSCRIBER, 8),
    (LifecycleStage.LEAD, 25),
    (LifecycleStage.QUALIFIED, 15),
    (LifecycleStage.OPPORTUNITY, 15),
    (LifecycleStage.CUSTOMER, 27),
    (LifecycleStage.EVANGELIST, 5),
    (LifecycleStage.CHURNED, 5),
)
BUYING_STAGES = (LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST, LifecycleStage.CHURNED)
CUSTOMER_TAGS = (
    "vip", "newsletter", "decision-maker", "champion", "beta-tester", "churn-risk",
    "trade-show-2025", "webinar-attendee", "technical", "budget-holder",
)  # fmt: skip
NEEDS = (
    "onboarding", "api-access", "sso", "priority-support", "volume-discount", "training",
    "data-migration", "integrations", "reporting", "gdpr-compliance", "mobile-app",
)  # fmt: skip
SOURCES = ("website", "referral", "trade-show", "webinar", "outbound", "partner", "content")
JOB_TITLES = (
    "Head of Operations", "CTO", "Sales Director", "Procurement Manager", "IT Manager",
    "Marketing Lead", "CFO", "Customer Success Manager", "Product Owner", "Office Manager",
    "VP Engineering", "Founder & CEO",
)  # fmt: skip

# (name, probability); the last two stages of each pipeline are won and lost.
SALES_STAGES = (
    ("Lead in", 10),
    ("Qualified", 25),
    ("Proposal sent", 50),
    ("Negotiation", 75),
    ("Closed won", 100),
    ("Closed lost", 0),
)
RENEWAL_STAGES = (("Upcoming", 60), ("In discussion", 80), ("Renewed", 100), ("Not renewed", 0))
SALES_OFFERS = (
    "Professional plan", "Enterprise plan", "Team expansion", "Onboarding package",
    "API add-on", "Priority support", "Pilot project", "Data migration",
)  # fmt: skip
LOST_REASONS = (
    "Price too high", "Chose a competitor", "No budget this year", "Project postponed",
    "No response after proposal", "Missing feature: offline mode",
)  # fmt: skip
RENEWAL_LOST_REASONS = ("Switched to a competitor", "Company downsized", "Budget cut")

# (sku, name, unit price, seats: quantity can be large)
PRODUCTS = (
    ("CRM-STD-M", "CRM Standard, monthly seat", Decimal("29.00"), True),
    ("CRM-PRO-M", "CRM Professional, monthly seat", Decimal("59.00"), True),
    ("CRM-ENT-Y", "CRM Enterprise, annual seat", Decimal("1188.00"), True),
    ("ADD-API-Y", "API add-on, annual", Decimal("480.00"), False),
    ("ADD-SSO-Y", "SSO add-on, annual", Decimal("600.00"), False),
    ("SUP-PRIO-Y", "Priority support, annual", Decimal("2400.00"), False),
    ("SRV-ONBOARD", "Onboarding package", Decimal("1500.00"), False),
    ("SRV-TRAIN-D", "Remote training day", Decimal("900.00"), False),
    ("SRV-MIGRATE", "Data migration service", Decimal("3200.00"), False),
    ("STO-100GB-M", "Extra storage 100 GB, monthly", Decimal("49.00"), False),
)

PRODUCT_CATEGORIES = {
    "CRM": "Subscriptions",
    "ADD": "Add-ons",
    "SUP": "Support",
    "SRV": "Services",
    "STO": "Storage",
}
CATALOGUE_CURRENCY = "USD"

ACTIVITY_WEIGHTS = (
    (ActivityType.NOTE, 25),
    (ActivityType.CALL, 20),
    (ActivityType.EMAIL, 25),
    (ActivityType.MEETING, 10),
    (ActivityType.TASK, 20),
)
ACTIVITY_SUBJECTS: dict[ActivityType, tuple[str, ...]] = {
    ActivityType.NOTE: (
        "Notes from onboarding session", "Budget confirmed for next quarter",
        "{first} prefers email over calls", "Feedback on the reporting module",
        "Internal note: check contract terms", "Met {first} at the trade show",
    ),
    ActivityType.CALL: (
        "Discovery call with {first}", "Follow-up call", "Pricing questions",
        "Check-in call", "Call about renewal", "Support escalation call",
    ),
    ActivityType.EMAIL: (
        "Sent proposal", "Re: pricing for {offer}", "Introduction email",
        "Sent case study", "Re: contract questions", "Follow-up after demo",
    ),
    ActivityType.MEETING: (
        "Product demo", "Quarterly business review", "Kick-off meeting",
        "Contract negotiation", "Technical deep dive with {first}'s team",
    ),
    ActivityType.TASK: (
        "Send contract to {first}", "Prepare quote for {offer}", "Schedule demo",
        "Follow up on open invoice", "Update account plan", "Book onboarding session",
    ),
}  # fmt: skip
ACTIVITY_BODIES = (
    "{company} is evaluating {offer}; {first} wants to see numbers first.",
    "Discussed timeline and next steps. Decision expected within the month.",
    "Main concern is integration with their existing tools.",
    "{first} asked for references from customers in the same industry.",
    "Positive overall; legal review of the contract is still pending.",
    "They currently use spreadsheets and want to move away from them this year.",
    "Asked about volume pricing for more seats.",
    "Shared the security whitepaper and the GDPR documentation.",
)
CALL_OUTCOMES = ("connected", "left voicemail", "no answer", "scheduled follow-up")
MEETING_LOCATIONS = ("Video call", "Customer office", "Our office", "Trade show booth")


@dataclass(frozen=True)
class Topic:
    """A support conversation's script: it opens with the first lines (customer first,
    then alternating), long threads continue with generic follow-ups, and resolved ones
    end with the agent's fix, the customer's thanks and the agent's goodbye."""

    subject: str
    opening: tuple[str, ...]
    fix: str
    thanks: str
    goodbye: str


CONVERSATION_TOPICS: tuple[Topic, ...] = (
    Topic(
        "Cannot log in after password reset",
        ("I reset my password but still cannot log in.",
         "Sorry about that! Which browser are you using?",
         "Chrome, and I tried a private window too. Same error.",
         "Thanks. Does it say the session expired, or that the password is wrong?",
         "It says my session has expired right after logging in."),
        "I have cleared your old sessions on our side, please try once more.",
        "That worked, thank you!",
        "Glad to hear it. Have a good day!",
    ),
    Topic(
        "Question about the last invoice",
        ("Our last invoice shows more seats than we use.",
         "Let me check your subscription, one moment please.",
         "We have 12 active users, not 15.",
         "I see three deactivated users still counted as seats."),
        "I have issued a credit note and a corrected invoice for 12 seats.",
        "Perfect, received it. Thanks!",
        "You're welcome. Anything else, just write to us.",
    ),
    Topic(
        "Upgrade to the Professional plan",
        ("We would like to upgrade to the Professional plan.",
         "Happy to help! Should the upgrade apply to all seats?",
         "Yes, all of them. Do we keep all our data and settings?",
         "Yes, everything stays as it is; only new features are unlocked.",
         "When would the new price apply?"),
        "The upgrade is done; the new price applies from your next billing cycle.",
        "Great, we can see the new features already.",
        "Enjoy them! I will close this conversation.",
    ),
    Topic(
        "CSV export fails",
        ("Exporting our customer list to CSV fails with an error.",
         "Thanks for reporting this. Does it fail for every export?",
         "Only for the full list, about 5,000 rows. Smaller ones work.",
         "Understood. As a workaround you can export in parts by creation date."),
        "We found the cause, large exports timed out. The fix is live now.",
        "Thanks, the full export worked.",
        "Great, thanks for your patience!",
    ),
    Topic(
        "Change of delivery address",
        ("We moved offices, can you update our delivery address?",
         "Of course. Please send us the new address.",
         "It is in the attachment. Does it apply to yesterday's order too?",
         "That order has not shipped yet, so I can still change it."),
        "Updated: yesterday's order and all future ones go to the new address.",
        "Thank you for the quick help.",
        "You're welcome, have a great day!",
    ),
    Topic(
        "Setting up single sign-on",
        ("We want to enable SSO with our identity provider.",
         "Great! The SSO add-on is active on your account. Which provider do you use?",
         "Our own SAML provider. Which attributes do you need?",
         "The email as NameID, plus first and last name attributes.",
         "Our IT team configured it, but the login loops back to the start page."),
        "The callback URL was missing a trailing slash; I have corrected it in your settings.",
        "It works now, thanks!",
        "Excellent. I will close this conversation then.",
    ),
    Topic(
        "Feature request: recurring tasks",
        ("Is it possible to create recurring tasks?",
         "Not yet, but it is on our roadmap. What do you need them for?",
         "Weekly follow-ups for our key accounts."),
        "I have added your use case to the request; until then a saved filter of open tasks helps.",
        "Okay, thanks for passing it on.",
        "I will let you know as soon as it ships.",
    ),
)  # fmt: skip
CUSTOMER_FOLLOW_UPS = (
    "Any update on this?",
    "One more detail: this happens for my colleagues too.",
    "I have attached a screenshot.",
    "Okay, I will try that now.",
    "Still the same, unfortunately.",
)
AGENT_FOLLOW_UPS = (
    "Thanks for your patience, I am checking with the team.",
    "Could you send a screenshot of what you see?",
    "I am looking into it right now.",
    "Thanks, that helps a lot.",
    "Let me try to reproduce it on our side.",
)
# Customers' satisfaction ratings of closed conversations (1 to 5), mostly content.
RATING_SCORES = (1, 2, 3, 4, 5)
RATING_WEIGHTS = (5, 8, 12, 35, 40)
RATING_COMMENTS = {
    1: "Nobody solved my problem.",
    2: "Slow, and I had to explain it twice.",
    3: "Solved in the end.",
    4: "Quick and friendly, thanks.",
    5: "Excellent help, solved at once!",
}

MESSAGE_GAPS: dict[Channel, tuple[int, int]] = {  # minutes between messages
    Channel.CHAT: (1, 6),
    Channel.EMAIL: (45, 20 * 60),
    Channel.PHONE: (1, 8),
    Channel.SOCIAL: (5, 180),
}


# --- generation -----------------------------------------------------------------------


def _ascii(text: str) -> str:
    """Letters of ``text`` without accents, lower-cased, for email local parts."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


@dataclass
class _Person:
    """What later tables need to know about a generated customer."""

    id: uuid.UUID
    name: str
    first: str
    created_at: datetime
    stage: LifecycleStage
    owner_id: uuid.UUID
    country: Country
    company_id: uuid.UUID | None
    company_name: str | None
    company_size: int | None
    deals: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _DemoData:
    workspace_id: uuid.UUID
    users: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    deals: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


class _DemoBuilder:
    """Builds every row in memory (ids included) so they can be bulk-inserted in FK order.
    Only ``self.rng`` decides content; no set is iterated, so the order is reproducible."""

    def __init__(
        self,
        rng: random.Random,
        workspace_id: uuid.UUID,
        domain: str,
        hashes: dict[str, str],
        now: datetime = BASE_TIME,
    ) -> None:
        # The demo's "today" and the start of its history.
        self.now = now
        self.start = now - HISTORY
        self.rng = rng
        self.ws = workspace_id
        self.domain = domain
        self.hashes = hashes
        self.data = _DemoData(workspace_id)
        self.people: list[_Person] = []
        self.sellers: list[uuid.UUID] = []  # manager and agents: own customers and deals
        self.agents: list[uuid.UUID] = []  # answer conversations
        self.writers: list[uuid.UUID] = []  # everybody who can write activities

    def build(self) -> _DemoData:
        self._users()
        companies = self._companies()
        self._customers(companies)
        self._deals()
        self._activities()
        self._products()
        self._orders()
        self._conversations()
        return self.data

    # -- helpers

    def _row(self, **values: Any) -> dict[str, Any]:
        created = values.setdefault("created_at", self.now)
        values.setdefault("updated_at", created)
        return {"id": uuid7(), "workspace_id": self.ws, **values}

    def _moment(self, start: datetime, end: datetime, *, recent: bool = False) -> datetime:
        """A moment between start and end, in working hours when that fits; ``recent``
        favours the end (the business grows, so there is more recent history)."""
        seconds = int((end - start).total_seconds())
        if seconds <= 0:
            return start
        offset = self.rng.uniform(0, seconds)
        if recent and self.rng.random() < 0.35:  # some of them: more the later it is
            offset = max(offset, self.rng.uniform(0, seconds))
        moment = (start + timedelta(seconds=int(offset))).replace(second=0, microsecond=0)
        in_hours = moment.replace(hour=self.rng.randint(7, 17), minute=self.rng.randint(0, 59))
        if start <= in_hours <= end:
            return in_hours
        return max(start, min(moment, end))

    def _digits(self, pattern: str) -> str:
        return "".join(str(self.rng.randint(0, 9)) if c == "#" else c for c in pattern)

    def _phone(self, country: Country) -> str | None:
        """A fictitious number of the country, stored as every write stores one (E.164)."""
        return fields.phone(self._digits(country.phone_format))

    def _country(self) -> Country:
        return self.rng.choices(COUNTRIES, weights=[c.weight for c in COUNTRIES])[0]

    def _address(self, country: Country) -> dict[str, Any]:
        city, region, postal, _ = self.rng.choice(country.cities)
        street = country.street_format.format(
            name=self.rng.choice(country.streets), number=self.rng.randint(1, 220)
        )
        return {
            "street": street,
            "city": city,
            "region": region,
            "postalCode": self._digits(postal),
            "country": country.code,
        }

    def _age(self, person: _Person) -> int:
        """Days the customer has been in the CRM (a week at least)."""
        return max(7, (self.now - person.created_at).days)

    @staticmethod
    def _deal_ceiling(person: _Person) -> int:
        """The largest plausible deal in cents: bigger companies buy more."""
        if person.company_size is None:
            return 12_000_00
        return min(250_000_00, 5_000_00 + person.company_size * 40_00)

    def _timezone(self, country: Country, city: str) -> str:
        for name, _, _, tz in country.cities:
            if name == city:
                return tz
        return country.cities[0][3]

    # -- tables

    def _users(self) -> None:
        joined = self.start - timedelta(days=21)
        for index, user in enumerate(DEMO_USERS):
            created = joined + timedelta(days=index, hours=9)
            row = self._row(
                email=f"{user.local_part}@{self.domain}",
                name=user.name,
                password_hash=self.hashes[user.password],
                role=user.role,
                is_active=True,
                created_at=created,
            )
            self.data.users.append(row)
            if user.role in (Role.MANAGER, Role.AGENT):
                self.sellers.append(row["id"])
            if user.role is Role.AGENT:
                self.agents.append(row["id"])
            if user.role is not Role.VIEWER:
                self.writers.append(row["id"])

    def _companies(self) -> list[tuple[dict[str, Any], Country, float]]:
        rng = self.rng
        result = []
        for prefix in rng.sample(COMPANY_PREFIXES, COMPANY_COUNT):
            word, industry = rng.choice(COMPANY_KINDS)
            country = self._country()
            low, high = rng.choice(((5, 50), (50, 250), (250, 1000), (1000, 20000)))
            employees = rng.randint(low, high)
            separator = rng.choice(("", "-"))
            domain = f"{prefix.lower()}{separator}{word.lower()}.example"
            address = self._address(country)
            custom: dict[str, Any] = {
                "accountTier": rng.choice(("bronze", "silver", "gold", "platinum")),
                "foundedYear": rng.randint(1952, 2021),
            }
            if rng.random() < 0.5:
                custom["vatId"] = f"{country.code}{self._digits('#########')}"
            row = self._row(
                name=f"{prefix} {word} {country.legal_suffix}",
                domain=domain,
                industry=industry,
                employee_count=employees,
                phone=self._phone(country),
                website=f"https://www.{domain}",
                address=address,
                owner_id=rng.choice(self.sellers),
                tags=rng.sample(COMPANY_TAGS, rng.randint(0, 3)),
                custom_fields=custom,
                created_at=self._moment(self.start, self.start + timedelta(days=270)),
            )
            self.data.companies.append(row)
            # bigger companies have more contacts in the CRM
            result.append((row, country, 1.0 + employees**0.3))
        return result

    def _customers(self, companies: list[tuple[dict[str, Any], Country, float]]) -> None:
        rng = self.rng
        names: set[str] = set()  # membership only, never iterated
        emails: set[str] = set()
        stages = [s for s, _ in LIFECYCLE_WEIGHTS]
        stage_weights = [w for _, w in LIFECYCLE_WEIGHTS]
        company_weights = [w for _, _, w in companies]
        owner_weights = [1 if i == 0 else 3 for i in range(len(self.sellers))]
        rows = []
        for _ in range(CUSTOMER_COUNT):
            while True:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                if f"{first} {last}" not in names:
                    break
            name = f"{first} {last}"
            names.add(name)
            company: dict[str, Any] | None = None
            if rng.random() < 0.8:
                company, country, _ = rng.choices(companies, weights=company_weights)[0]
                domain = company["domain"]
                created = self._moment(
                    company["created_at"] + timedelta(days=1),
                    self.now - timedelta(days=2),
                    recent=True,
                )
            else:
                country = self._country()
                domain = rng.choice(FREE_MAIL_DOMAINS)
                created = self._moment(self.start, self.now - timedelta(days=2), recent=True)
            f, la = _ascii(first), _ascii(last)
            local = rng.choice(
                (f"{f}.{la}", f"{f[0]}.{la}", f"{f}{la}", f"{f}_{la}", f"{f[0]}{la}")
            )
            email = f"{local}@{domain}"
            number = 2
            while email in emails:
                email = f"{local}{number}@{domain}"
                number += 1
            emails.add(email)
            stage = rng.choices(stages, weights=stage_weights)[0]
            address = self._address(country)
            preferences: dict[str, Any] = {
                "language": country.language,
                "contactChannel": rng.choice(("email", "email", "phone", "chat")),
                "newsletter": rng.random() < 0.55,
                "timezone": self._timezone(country, address["city"]),
            }
            custom: dict[str, Any] = {"source": rng.choice(SOURCES)}
            if company is not None:
                custom["jobTitle"] = rng.choice(JOB_TITLES)
            if stage in BUYING_STAGES:
                custom["npsScore"] = (
                    rng.randint(0, 10)
                    if stage is not LifecycleStage.EVANGELIST
                    else rng.randint(9, 10)
                )
            owner = rng.choices(self.sellers, weights=owner_weights)[0]
            row = self._row(
                name=name,
                email=email,
                phone=self._phone(country) if rng.random() < 0.85 else None,
                address=address if rng.random() < 0.9 else null(),  # SQL NULL, not JSON null
                lifecycle_stage=stage,
                owner_id=owner,
                company_id=company["id"] if company else None,
                tags=rng.sample(CUSTOMER_TAGS, rng.choice((0, 1, 1, 2, 2, 3))),
                needs=rng.sample(NEEDS, rng.choice((0, 1, 2, 2, 3))),
                preferences=preferences,
                custom_fields=custom,
                last_activity_at=None,  # filled from the activities below
                created_at=created,
            )
            rows.append(row)
            self.people.append(
                _Person(
                    id=row["id"],
                    name=name,
                    first=first,
                    created_at=created,
                    stage=stage,
                    owner_id=owner,
                    country=country,
                    company_id=company["id"] if company else None,
                    company_name=company["name"] if company else None,
                    company_size=company["employee_count"] if company else None,
                )
            )
        self.data.customers = rows

    def _pipeline(
        self, name: str, position: int, stages: tuple[tuple[str, int], ...]
    ) -> tuple[uuid.UUID, list[uuid.UUID]]:
        created = self.start - timedelta(days=20)
        pipeline = self._row(name=name, position=position, created_at=created)
        self.data.pipelines.append(pipeline)
        ids = []
        for index, (stage_name, probability) in enumerate(stages):
            stage = self._row(
                pipeline_id=pipeline["id"],
                name=stage_name,
                position=index,
                probability=probability,
                created_at=created,
            )
            self.data.stages.append(stage)
            ids.append(stage["id"])
        return pipeline["id"], ids

    def _deals(self) -> None:
        rng = self.rng
        sales = self._pipeline("Sales", 0, SALES_STAGES)
        renewals = self._pipeline("Renewals", 1, RENEWAL_STAGES)
        sales_weights = {
            LifecycleStage.LEAD: 2,
            LifecycleStage.QUALIFIED: 4,
            LifecycleStage.OPPORTUNITY: 8,
            LifecycleStage.CUSTOMER: 3,
            LifecycleStage.EVANGELIST: 2,
        }
        sales_people = [p for p in self.people if p.stage in sales_weights]
        sales_w = [sales_weights[p.stage] * self._age(p) for p in sales_people]
        renewal_people = [p for p in self.people if p.stage in BUYING_STAGES] or self.people
        renewal_w = [self._age(p) for p in renewal_people]
        for index in range(DEAL_COUNT):
            renewal = index >= DEAL_COUNT - RENEWAL_DEAL_COUNT
            if renewal:
                person = rng.choices(renewal_people, weights=renewal_w)[0]
                pipeline_id, stage_ids = renewals
            else:
                person = rng.choices(sales_people, weights=sales_w)[0]
                pipeline_id, stage_ids = sales
            created = self._moment(person.created_at, self.now - timedelta(days=1))
            age = (self.now - created).days
            closed = rng.random() < min(0.85, age / 240)
            lost_reason: str | None = None
            closed_at: datetime | None = None
            if closed:
                won_chance = 0.8 if renewal else 0.45
                if person.stage is LifecycleStage.CHURNED:
                    won_chance = 0.0
                won = rng.random() < won_chance
                status = DealStatus.WON if won else DealStatus.LOST
                stage_id = stage_ids[-2] if won else stage_ids[-1]
                if not won:
                    lost_reason = rng.choice(RENEWAL_LOST_REASONS if renewal else LOST_REASONS)
                closed_at = self._moment(
                    created + timedelta(days=min(10, age // 2)),
                    min(created + timedelta(days=150), self.now - timedelta(hours=1)),
                )
                expected = (created + timedelta(days=rng.randint(20, 120))).date()
            else:
                status = DealStatus.OPEN
                open_stages = stage_ids[:-2]
                weights = (60, 40) if renewal else (30, 25, 25, 20)
                stage_id = rng.choices(open_stages, weights=weights)[0]
                expected = (created + timedelta(days=rng.randint(20, 150))).date()
                if expected < self.now.date() - timedelta(days=30):
                    expected = self.now.date() + timedelta(days=rng.randint(5, 120))
            ceiling = self._deal_ceiling(person)
            if renewal:
                year = closed_at.year if closed_at else expected.year
                title = f"{person.company_name or person.name} - {year} renewal"
                cents = rng.randrange(ceiling // 10, ceiling // 2)
            else:
                offer = rng.choice(SALES_OFFERS)
                title = f"{person.company_name or person.name} - {offer}"
                cents = rng.randrange(ceiling // 20, ceiling)
            deal = self._row(
                title=title,
                pipeline_id=pipeline_id,
                stage_id=stage_id,
                customer_id=person.id,
                company_id=person.company_id,
                owner_id=person.owner_id if rng.random() < 0.8 else rng.choice(self.sellers),
                amount=_money(Decimal(cents // 50_00 * 50_00 or 50_00) / 100),
                currency=person.country.currency,
                status=status,
                expected_close_date=expected,
                closed_at=closed_at,
                lost_reason=lost_reason,
                created_at=created,
                updated_at=closed_at or created,
            )
            self.data.deals.append(deal)
            person.deals.append(deal)

    def _activities(self) -> None:
        rng = self.rng
        weights_by_stage = {
            LifecycleStage.SUBSCRIBER: 1,
            LifecycleStage.LEAD: 3,
            LifecycleStage.QUALIFIED: 5,
            LifecycleStage.OPPORTUNITY: 9,
            LifecycleStage.CUSTOMER: 6,
            LifecycleStage.EVANGELIST: 6,
            LifecycleStage.CHURNED: 2,
        }
        # older customers have a longer history: weight by age so that the timeline
        # spreads over the whole period instead of piling up at its end
        people_weights = [weights_by_stage[p.stage] * self._age(p) for p in self.people]
        types = [t for t, _ in ACTIVITY_WEIGHTS]
        type_weights = [w for _, w in ACTIVITY_WEIGHTS]
        latest: dict[uuid.UUID, datetime] = {}
        for _ in range(ACTIVITY_COUNT):
            person = rng.choices(self.people, weights=people_weights)[0]
            deal: dict[str, Any] | None = None
            start = person.created_at
            if person.deals and rng.random() < 0.45:
                deal = rng.choice(person.deals)
                start = max(start, deal["created_at"])
            occurred = self._moment(start, self.now - timedelta(minutes=5))
            kind = rng.choices(types, weights=type_weights)[0]
            offer = rng.choice(SALES_OFFERS).lower()
            company = person.company_name or f"{person.first}'s team"
            subject = rng.choice(ACTIVITY_SUBJECTS[kind]).format(first=person.first, offer=offer)
            body: str | None = None
            if kind is not ActivityType.TASK or rng.random() < 0.4:
                body = rng.choice(ACTIVITY_BODIES).format(
                    first=person.first, offer=offer, company=company
                )
            details: dict[str, Any] = {}
            due_at: datetime | None = None
            completed_at: datetime | None = None
            if kind is ActivityType.CALL:
                details = {
                    "direction": rng.choice(("outbound", "outbound", "inbound")),
                    "durationMinutes": rng.randint(2, 45),
                    "outcome": rng.choice(CALL_OUTCOMES),
                }
            elif kind is ActivityType.EMAIL:
                details = {"direction": rng.choice(("outbound", "inbound"))}
            elif kind is ActivityType.MEETING:
                details = {
                    "durationMinutes": rng.choice((30, 45, 60, 90)),
                    "location": rng.choice(MEETING_LOCATIONS),
                }
            elif kind is ActivityType.TASK:
                due_at = (occurred + timedelta(days=rng.randint(1, 14))).replace(
                    hour=rng.choice((9, 12, 17)), minute=0
                )
                details = {"priority": rng.choice(("low", "normal", "normal", "high"))}
                if due_at < self.now and rng.random() < 0.8:
                    completed_at = self._moment(
                        occurred, min(due_at + timedelta(days=2), self.now - timedelta(minutes=1))
                    )
            author = person.owner_id if rng.random() < 0.6 else rng.choice(self.writers)
            self.data.activities.append(
                self._row(
                    type=kind,
                    subject=subject,
                    body=body,
                    customer_id=person.id,
                    deal_id=deal["id"] if deal else None,
                    author_id=author,
                    occurred_at=occurred,
                    due_at=due_at,
                    completed_at=completed_at,
                    details=details,
                    created_at=occurred,
                    updated_at=completed_at or occurred,
                )
            )
            if person.id not in latest or occurred > latest[person.id]:
                latest[person.id] = occurred
        for row in self.data.customers:
            row["last_activity_at"] = latest.get(row["id"])
            if row["last_activity_at"] is not None:
                row["updated_at"] = max(row["created_at"], row["last_activity_at"])

    def _products(self) -> None:
        """The catalogue behind ``PRODUCTS`` (no random draw: the other tables stay as
        they were before the catalogue existed)."""
        added = self.start - timedelta(days=20)
        for sku, name, price, _ in PRODUCTS:
            self.data.products.append(
                self._row(
                    sku=sku,
                    name=name,
                    category=PRODUCT_CATEGORIES[sku.split("-")[0]],
                    price=price,
                    currency=CATALOGUE_CURRENCY,
                    version=1,
                    created_at=added,
                )
            )

    def _orders(self) -> None:
        rng = self.rng
        buyers = [p for p in self.people if p.stage in BUYING_STAGES] or self.people
        buyer_weights = [self._age(p) for p in buyers]
        drafts = []
        for _ in range(ORDER_COUNT):
            person = rng.choices(buyers, weights=buyer_weights)[0]
            placed = self._moment(person.created_at, self.now - timedelta(hours=1))
            items = []
            total = Decimal("0")
            for sku, name, price, seats in rng.sample(PRODUCTS, rng.choice((1, 1, 2, 2, 3, 4))):
                quantity = rng.randint(1, 40) if seats else rng.choice((1, 1, 1, 2))
                items.append(
                    {"sku": sku, "name": name, "quantity": quantity, "unitPrice": str(price)}
                )
                total += price * quantity
            age = self.now - placed
            if age < timedelta(days=3):
                status = rng.choice((OrderStatus.PENDING, OrderStatus.PAID))
            elif age < timedelta(days=14):
                status = rng.choice(
                    (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.FULFILLED)
                )
            else:
                status = rng.choices(
                    (
                        OrderStatus.FULFILLED,
                        OrderStatus.PAID,
                        OrderStatus.CANCELLED,
                        OrderStatus.REFUNDED,
                    ),
                    weights=(80, 6, 8, 6),
                )[0]
            changed = placed
            if status is not OrderStatus.PENDING:
                changed = min(placed + timedelta(days=rng.randint(0, 6)), self.now)
            drafts.append((placed, person, status, items, _money(total), changed))
        drafts.sort(key=lambda d: d[0])
        for number, (placed, person, status, items, total, changed) in enumerate(drafts, 10001):
            self.data.orders.append(
                self._row(
                    customer_id=person.id,
                    number=f"SO-{placed.year}-{number:05d}",
                    status=status,
                    amount=total,
                    currency=person.country.currency,
                    placed_at=placed,
                    items=items,
                    created_at=placed,
                    updated_at=changed,
                )
            )

    def _conversations(self) -> None:
        rng = self.rng
        established = [p for p in self.people if p.created_at < self.now - timedelta(days=80)]
        people = rng.sample(established or self.people, CONVERSATION_COUNT)
        channels = [list(Channel)[i % len(Channel)] for i in range(CONVERSATION_COUNT)]
        rng.shuffle(channels)
        for person, channel in zip(people, channels, strict=True):
            topic = rng.choice(CONVERSATION_TOPICS)
            count = rng.randint(3, 15)
            low, high = MESSAGE_GAPS[channel]
            gaps = [timedelta(minutes=rng.randint(low, high)) for _ in range(count - 1)]
            duration = sum(gaps, timedelta())
            active = rng.random() < 0.6  # still going on, or a past one
            if active:
                start = self._moment(self.now - timedelta(days=6), self.now - timedelta(hours=1))
            else:
                start = self._moment(self.now - timedelta(days=90), self.now - timedelta(days=20))
            start = min(start, self.now - timedelta(minutes=1) - duration)
            times = [start]
            for gap in gaps:
                times.append(times[-1] + gap)
            if not active or rng.random() < 0.2:
                status = ConversationStatus.CLOSED
            elif count % 2 == 1:  # the customer spoke last: waiting for us
                status = ConversationStatus.OPEN
            else:  # we answered last: waiting for the customer
                status = ConversationStatus.PENDING
            assignee: uuid.UUID | None = None
            if status is ConversationStatus.CLOSED or rng.random() < 0.6:
                assignee = rng.choice(self.agents)
            conversation = self._row(
                customer_id=person.id,
                channel=channel,
                status=status,
                subject=topic.subject,
                assignee_id=assignee,
                is_private=False,
                last_message_seq=count,
                last_message_at=times[-1],
                # What sending the messages would have set (services.conversations):
                # the customer writes first, an agent answers second.
                first_customer_message_at=times[0],
                first_response_at=times[1],
                closed_at=times[-1] if status is ConversationStatus.CLOSED else None,
                created_at=start,
                updated_at=times[-1],
            )
            self.data.conversations.append(conversation)
            bodies = self._script(topic, count, resolved=status is ConversationStatus.CLOSED)
            bodies[0] = f"Hello, this is {person.first}. {bodies[0]}"
            responder = assignee or rng.choice(self.agents)
            for seq, (moment, body) in enumerate(zip(times, bodies, strict=True), 1):
                from_customer = seq % 2 == 1
                self.data.messages.append(
                    self._row(
                        conversation_id=conversation["id"],
                        seq=seq,
                        author_type=(
                            MessageAuthorType.CUSTOMER if from_customer else MessageAuthorType.AGENT
                        ),
                        author_user_id=None if from_customer else responder,
                        body=body,
                        client_message_id=None,
                        created_at=moment,
                    )
                )

        self._ratings()

    def _ratings(self) -> None:
        """Most closed conversations rated by their customer (CSAT) a little after closing,
        mostly 4 or 5, as a channel integration would post them. Drawn after every other
        row, so the rest of the demo is the same as before ratings existed."""
        rng = self.rng
        for conversation in self.data.conversations:
            closed = conversation["closed_at"]
            rated = closed is not None and rng.random() < 0.75
            score = rng.choices(RATING_SCORES, RATING_WEIGHTS)[0] if rated else None
            conversation["rating_score"] = score
            conversation["rating_comment"] = RATING_COMMENTS[score] if score else None
            conversation["rated_at"] = (
                closed + timedelta(minutes=rng.randint(5, 600)) if rated else None
            )

    def _script(self, topic: Topic, count: int, *, resolved: bool) -> list[str]:
        """``count`` message bodies, customer first and then alternating."""
        # follow-ups in a shuffled order, so a long thread does not repeat itself at once
        follow_ups = {
            0: self.rng.sample(CUSTOMER_FOLLOW_UPS, len(CUSTOMER_FOLLOW_UPS)),
            1: self.rng.sample(AGENT_FOLLOW_UPS, len(AGENT_FOLLOW_UPS)),
        }
        bodies = []
        for index in range(count):
            if index < len(topic.opening):
                bodies.append(topic.opening[index])
            else:
                pool = follow_ups[index % 2]
                bodies.append(pool[(index - len(topic.opening)) // 2 % len(pool)])
        if resolved:
            # ... agent's fix, customer's thanks[, agent's goodbye]
            ending = [topic.fix, topic.thanks] + ([topic.goodbye] if count % 2 == 0 else [])
            bodies[count - len(ending) :] = ending
        return bodies


__all__ = [
    "BASE_TIME",
    "DEFAULT_EMAIL_DOMAIN",
    "DEMO_LOGINS",
    "DEMO_USERS",
    "HISTORY",
    "START_TIME",
    "DemoSummary",
    "DemoUser",
    "database_is_empty",
    "demo_logins",
    "seed_demo",
]
