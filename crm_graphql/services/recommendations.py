"""Next best offer and churn risk: explainable judgments over purchase history.

Recommendations are item-based collaborative filtering computed in one SQL statement for
a whole page of customers: two products are similar by the cosine of their buyer sets
(``customers who bought both / sqrt(buyers of one x buyers of the other)``), and a product
the customer has not bought scores the sum of its similarities to what the customer did
buy. Its reason names the purchase it was most often bought together with. Customers
without history (or with fewer related products than asked for) get the most popular
products, and the reason says so.

Churn risk compares the days since a customer's last order with that customer's own
usual interval (the median gap between their orders), and adds the trend of order value,
open support conversations and recent contact (formula in ``churn_risk_of``; decision
0016). Both are evaluated offline against simple baselines (``bench/eval_reco.py``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Float,
    Select,
    and_,
    case,
    cast,
    delete,
    exists,
    extract,
    func,
    insert,
    literal,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from crm_graphql.models import (
    Conversation,
    ConversationStatus,
    Customer,
    Order,
    OrderLine,
    Product,
    ProductBuyers,
    ProductPair,
    ProductPairSnapshot,
)
from crm_graphql.services import conversations, customers, fields, products, snapshots
from crm_graphql.services.actor import Actor, scope_condition
from crm_graphql.services.errors import Invalid, NotFound
from crm_graphql.services.policy import Action, allows, authorize

MAX_RECOMMENDATIONS = 50
DEFAULT_RECOMMENDATIONS = 5
SCORE_DECIMALS = 6


class Basis(enum.StrEnum):
    SIMILAR_CUSTOMERS = "similar_customers"  # bought together with what this customer bought
    POPULAR = "popular"  # the fallback: bought by the most customers


@dataclass(frozen=True)
class Recommendation:
    product: Product
    score: float
    reason: str
    basis: Basis


def check_first(first: int) -> None:
    """How many recommendations may be asked for (``Invalid`` otherwise)."""
    if isinstance(first, bool) or not 0 <= first <= MAX_RECOMMENDATIONS:
        raise Invalid(f"`first` must be between 0 and {MAX_RECOMMENDATIONS}", "first")


def purchases(actor: Actor) -> Select[uuid.UUID, uuid.UUID | None]:
    """Who bought which product: distinct (customer_id, product_id) of the lines with a
    product of the orders a purchase summary counts."""
    return (
        select(Order.customer_id.label("customer_id"), OrderLine.product_id.label("product_id"))
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            customers.counted_orders_condition(actor),
            scope_condition(OrderLine, actor),
            OrderLine.product_id.is_not(None),
        )
        .distinct()
    )


async def refresh_pairs(actor: Actor, engine: AsyncEngine) -> bool:
    """Make the workspace's co-purchase summary current (``snapshots.refresh``): buyers
    per product, customers per pair of products and buying customers, from every
    purchase. Returns whether it recomputed."""
    authorize(actor, Action.READ_CUSTOMERS)

    async def fill(connection: AsyncConnection, workspace_id: uuid.UUID) -> dict[str, Any]:
        workspace = literal(workspace_id, UUID(as_uuid=True))
        bought = purchases(actor).cte("bought")
        other = bought.alias("other")
        for model in (ProductPair, ProductBuyers):
            await connection.execute(delete(model).where(model.workspace_id == workspace_id))
        await connection.execute(
            insert(ProductBuyers).from_select(
                ["workspace_id", "product_id", "buyers"],
                select(workspace, bought.c.product_id, func.count()).group_by(bought.c.product_id),
            )
        )
        await connection.execute(
            insert(ProductPair).from_select(
                ["workspace_id", "product_id", "other_id", "together"],
                select(workspace, bought.c.product_id, other.c.product_id, func.count())
                .join(
                    other,
                    and_(
                        other.c.customer_id == bought.c.customer_id,
                        other.c.product_id != bought.c.product_id,
                    ),
                )
                .group_by(bought.c.product_id, other.c.product_id),
            )
        )
        buyers = await connection.scalar(select(func.count(func.distinct(bought.c.customer_id))))
        return {"buyers": buyers}

    return await snapshots.refresh(engine, ProductPairSnapshot, actor.workspace_id, fill)


async def ensure_pairs(actor: Actor, session: AsyncSession) -> None:
    """Before reading recommendations: make the co-purchase summary current when the
    order history changed since it was computed (``snapshots.ensure``)."""

    async def refresh_with(engine: AsyncEngine) -> bool:
        return await refresh_pairs(actor, engine)

    await snapshots.ensure(session, ProductPairSnapshot, actor.workspace_id, refresh_with)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _reason(basis: Basis, together: int, seed: str | None, buyers: int, history: bool) -> str:
    if basis is Basis.SIMILAR_CUSTOMERS:
        return f"Bought by {_plural(together, 'customer')} who also bought {seed}"
    why = "no purchase history yet" if not history else "few customers share its purchases"
    return f"Popular: bought by {together} of {_plural(buyers, 'customer')} ({why})"


async def recommendations_for(
    actor: Actor,
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    first: int = DEFAULT_RECOMMENDATIONS,
) -> dict[uuid.UUID, list[Recommendation]]:
    """Up to ``first`` live products per visible customer, best first, in one statement:
    products bought together with theirs first (by summed cosine similarity), then the
    most popular ones they have not bought. Customers the actor cannot see are absent."""
    authorize(actor, Action.READ_CUSTOMERS)
    check_first(first)
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return {}
    await ensure_pairs(actor, session)
    rows = await session.execute(recommendation_statement(actor, ids, first))
    found: dict[uuid.UUID, list[Recommendation]] = {}
    for product, target, score, together, kind, history, seed_name, total in rows.all():
        basis = Basis.SIMILAR_CUSTOMERS if kind == 0 else Basis.POPULAR
        reason = _reason(basis, int(together), seed_name, int(total or 0), bool(history))
        # Six decimals: the sum's last digits depend on the order PostgreSQL adds in.
        score = round(float(score), SCORE_DECIMALS)
        found.setdefault(target, []).append(Recommendation(product, score, reason, basis))
    return found


def recommendation_statement(actor: Actor, ids: Sequence[uuid.UUID], first: int) -> Select[Any]:
    """The one statement of ``recommendations_for``: (product, customer, score, together,
    kind, history, seed name, buying customers) ranked per customer."""
    targets = (
        select(Customer.id.label("customer_id"))
        .where(scope_condition(Customer, actor), Customer.id.in_(ids))
        .cte("targets")
    )
    # The workspace-wide counts come from the co-purchase summary when it was computed
    # from the current order history, else from every purchase (``snapshots``): one of
    # each pair of branches runs. Only the page's own purchases are always read.
    current = snapshots.is_current(ProductPairSnapshot, actor.workspace_id)
    bought = purchases(actor).cte("bought")
    popularity = union_all(
        select(ProductBuyers.product_id, ProductBuyers.buyers).where(
            scope_condition(ProductBuyers, actor), current
        ),
        select(bought.c.product_id, func.count().label("buyers"))
        .where(~current)
        .group_by(bought.c.product_id),
    ).cte("popularity")
    buyers_total = func.coalesce(
        select(ProductPairSnapshot.buyers)
        .where(ProductPairSnapshot.workspace_id == actor.workspace_id, current)
        .scalar_subquery(),
        select(func.count(func.distinct(bought.c.customer_id))).where(~current).scalar_subquery(),
    )
    mine = purchases(actor).where(Order.customer_id.in_(select(targets.c.customer_id))).cte("mine")
    # How many customers bought both: per pair of (a product some target bought, another
    # product), counted once for the page rather than once per target. A target cannot be
    # among the customers counted for a candidate it has not bought, so this is the
    # matrix-wide count the cosine needs.
    peer = bought.alias("peer")  # a customer who bought a target's product
    also = bought.alias("also")  # what that customer bought besides
    computed_co = (
        select(
            peer.c.product_id.label("seed"),
            also.c.product_id.label("candidate"),
            func.count().label("together"),
        )
        .select_from(
            peer.join(
                also,
                and_(
                    also.c.customer_id == peer.c.customer_id,
                    also.c.product_id != peer.c.product_id,
                ),
            )
        )
        .where(peer.c.product_id.in_(select(mine.c.product_id)), ~current)
        .group_by(peer.c.product_id, also.c.product_id)
    )
    stored_co = select(
        ProductPair.product_id.label("seed"),
        ProductPair.other_id.label("candidate"),
        ProductPair.together,
    ).where(
        scope_condition(ProductPair, actor),
        current,
        ProductPair.product_id.in_(select(mine.c.product_id)),
    )
    co = union_all(stored_co, computed_co).cte("co")
    pairs = (
        select(
            mine.c.customer_id.label("target"),
            mine.c.product_id.label("seed"),
            co.c.candidate,
            co.c.together,
        )
        .join(co, co.c.seed == mine.c.product_id)
        .cte("pairs")
    )
    seed_pop = popularity.alias("seed_pop")
    candidate_pop = popularity.alias("candidate_pop")
    owned = exists().where(
        mine.c.customer_id == pairs.c.target, mine.c.product_id == pairs.c.candidate
    )
    contributions = (
        select(
            pairs.c.target,
            pairs.c.seed,
            pairs.c.candidate,
            pairs.c.together,
            (
                cast(pairs.c.together, Float)
                / func.sqrt(cast(seed_pop.c.buyers * candidate_pop.c.buyers, Float))
            ).label("similarity"),
        )
        .join(seed_pop, seed_pop.c.product_id == pairs.c.seed)
        .join(candidate_pop, candidate_pop.c.product_id == pairs.c.candidate)
        .where(~owned)
        .cte("contributions")
    )
    # The reason's purchase: the one bought together with the candidate most often.
    strongest = func.array_agg(
        aggregate_order_by(
            contributions.c.seed,
            contributions.c.together.desc(),
            contributions.c.similarity.desc(),
            contributions.c.seed,
        ),
        type_=ARRAY(UUID(as_uuid=True)),
    )
    similar = select(
        contributions.c.target,
        contributions.c.candidate.label("product_id"),
        func.sum(contributions.c.similarity).label("score"),
        strongest[1].label("seed"),
        func.max(contributions.c.together).label("together"),
        literal(0).label("kind"),
        true().label("history"),
    ).group_by(contributions.c.target, contributions.c.candidate)
    has_history = exists().where(mine.c.customer_id == targets.c.customer_id)
    popular = (
        select(
            targets.c.customer_id.label("target"),
            popularity.c.product_id,
            (cast(popularity.c.buyers, Float) / cast(buyers_total, Float)).label("score"),
            cast(null(), UUID(as_uuid=True)).label("seed"),
            popularity.c.buyers.label("together"),
            literal(1).label("kind"),
            has_history.label("history"),
        )
        .select_from(targets.join(popularity, true()))
        .where(
            ~exists().where(
                mine.c.customer_id == targets.c.customer_id,
                mine.c.product_id == popularity.c.product_id,
            )
        )
    )
    candidates = union_all(similar, popular).subquery("candidates")
    live = products.PRODUCTS.statement(actor).subquery("live")
    first_of_product = func.row_number().over(
        partition_by=(candidates.c.target, candidates.c.product_id), order_by=candidates.c.kind
    )
    distinct = (
        select(candidates, first_of_product.label("duplicate"))
        .join(live, live.c.id == candidates.c.product_id)
        .subquery("distinct_candidates")
    )
    rank = func.row_number().over(
        partition_by=distinct.c.target,
        order_by=(distinct.c.kind, distinct.c.score.desc(), distinct.c.product_id),
    )
    ranked = (
        select(distinct, rank.label("rank")).where(distinct.c.duplicate == 1).subquery("ranked")
    )
    seed_product = aliased(Product, name="seed_product")
    return (
        select(
            Product,
            ranked.c.target,
            ranked.c.score,
            ranked.c.together,
            ranked.c.kind,
            ranked.c.history,
            seed_product.name,
            buyers_total,
        )
        .join(ranked, ranked.c.product_id == Product.id)
        .outerjoin(seed_product, seed_product.id == ranked.c.seed)
        .where(scope_condition(Product, actor), ranked.c.rank <= first)
        .order_by(ranked.c.target, ranked.c.rank)
    )


async def recommendations(
    actor: Actor,
    session: AsyncSession,
    customer_id: uuid.UUID | None,
    first: int = DEFAULT_RECOMMENDATIONS,
) -> list[Recommendation]:
    """``recommendations_for`` one customer; ``NotFound`` when the actor cannot see it."""
    if customer_id is None:
        raise NotFound("Customer not found", "customerId")
    visible = await session.scalar(
        select(Customer.id).where(scope_condition(Customer, actor), Customer.id == customer_id)
    )
    if visible is None:
        raise NotFound("Customer not found", "customerId")
    found = await recommendations_for(actor, session, [customer_id], first)
    return found.get(customer_id, [])


# ----------------------------------------------------------------------- churn risk


class RiskLevel(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Weights of the churn formula (decision 0016) and where its levels start.
OVERDUE_WEIGHT = 0.70
DECLINE_WEIGHT = 0.15
OPEN_ISSUES_WEIGHT = 0.15
RECENT_CONTACT_WEIGHT = 0.10
RECENT_CONTACT = timedelta(days=14)
HIGH_FROM = 0.6
MEDIUM_FROM = 0.35
MIN_GAP_DAYS = 1.0


@dataclass(frozen=True)
class OrderRhythm:
    """What the churn formula reads about one customer (two orders or more)."""

    orders: int
    usual_interval_days: float  # median gap between consecutive orders
    days_since_last_order: float
    last_amount: Decimal
    previous_average: Decimal | None  # earlier orders in the last order's currency
    open_conversations: int | None  # None: the actor may not read conversations
    contacted_recently: bool


@dataclass(frozen=True)
class ChurnRisk:
    score: float
    level: RiskLevel
    reasons: list[str]
    days_since_last_order: float
    usual_interval_days: float


def churn_risk_of(rhythm: OrderRhythm) -> ChurnRisk:
    """The churn formula:

    ``overdue = r^2 / (r^2 + 4)`` where ``r`` = days since the last order / usual interval
    (0.2 at the usual interval, 0.5 at twice it, 0.8 at four times);
    ``decline = clamp(1 - last amount / average of earlier orders, 0, 1)``;
    ``issues = min(open or pending conversations, 2) / 2``;
    ``contact = 1`` when an activity was logged in the last 14 days;
    ``score = clamp(0.70 overdue + 0.15 decline + 0.15 issues - 0.10 contact, 0, 1)``;
    HIGH from 0.6, MEDIUM from 0.35, else LOW."""
    interval = max(rhythm.usual_interval_days, MIN_GAP_DAYS)
    ratio = max(rhythm.days_since_last_order, 0.0) / interval
    overdue = ratio * ratio / (ratio * ratio + 4)
    days, usual = round(rhythm.days_since_last_order), round(interval)
    if ratio > 1:
        reasons = [
            f"No order for {_plural(days, 'day')}; usually orders every "
            f"{_plural(usual, 'day')} ({ratio:.1f}x the usual interval)"
        ]
    else:
        reasons = [f"Last order {_plural(days, 'day')} ago, within the usual {usual}-day interval"]
    decline = 0.0
    if rhythm.previous_average is not None and rhythm.previous_average > 0:
        decline = min(max(1 - float(rhythm.last_amount / rhythm.previous_average), 0.0), 1.0)
        if decline >= 0.2:
            reasons.append(f"Last order {decline:.0%} below the average of earlier orders")
    issues = 0.0
    if rhythm.open_conversations:
        issues = min(rhythm.open_conversations, 2) / 2
        reasons.append(f"{_plural(rhythm.open_conversations, 'open support conversation')}")
    contact = 1.0 if rhythm.contacted_recently else 0.0
    if contact:
        reasons.append("Contacted in the last 14 days (lowers the risk)")
    score = (
        OVERDUE_WEIGHT * overdue
        + DECLINE_WEIGHT * decline
        + OPEN_ISSUES_WEIGHT * issues
        - RECENT_CONTACT_WEIGHT * contact
    )
    score = min(max(score, 0.0), 1.0)
    level = (
        RiskLevel.HIGH
        if score >= HIGH_FROM
        else RiskLevel.MEDIUM
        if score >= MEDIUM_FROM
        else RiskLevel.LOW
    )
    return ChurnRisk(score, level, reasons, rhythm.days_since_last_order, interval)


async def order_rhythms(
    actor: Actor,
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
) -> dict[uuid.UUID, OrderRhythm]:
    """The churn formula's inputs for the customers with two counted orders or more placed
    by ``now``, in three statements whatever their number. Without ``now`` (the API) the
    reference is the start of the current hour and every order counts: the same question
    gets the same answer (same bytes) within the hour, and a risk needs no finer clock."""
    authorize(actor, Action.READ_CUSTOMERS)
    placed_by = now
    now = now or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return {}
    in_time = (Order.placed_at, Order.id)
    previous = func.lag(Order.placed_at).over(partition_by=Order.customer_id, order_by=in_time)
    timeline = (
        select(
            Order.customer_id,
            Order.placed_at,
            Order.amount,
            Order.currency,
            # No gap between orders stored at -infinity or infinity (PostgreSQL cannot
            # subtract two infinities): they are left out of the usual interval.
            case(
                (
                    and_(func.isfinite(Order.placed_at), func.isfinite(previous)),
                    cast(extract("epoch", Order.placed_at - previous), Float) / 86400,
                ),
            ).label("gap_days"),
            func.row_number()
            .over(
                partition_by=Order.customer_id,
                order_by=(Order.placed_at.desc(), Order.id.desc()),
            )
            .label("newest"),
        )
        .where(
            customers.counted_orders_condition(actor),
            Order.customer_id.in_(ids),
            true() if placed_by is None else Order.placed_at <= placed_by,
        )
        .cte("timeline")
    )
    last = timeline.alias("last_order")
    stats = await session.execute(
        select(
            timeline.c.customer_id,
            func.count(),
            func.percentile_cont(0.5).within_group(timeline.c.gap_days),
            last.c.placed_at,
            last.c.amount,
            func.avg(timeline.c.amount).filter(
                and_(timeline.c.newest > 1, timeline.c.currency == last.c.currency)
            ),
        )
        .join(last, and_(last.c.customer_id == timeline.c.customer_id, last.c.newest == 1))
        .group_by(timeline.c.customer_id, last.c.placed_at, last.c.amount)
        .having(func.count() >= 2)
    )
    rows = stats.all()
    # The same statements whatever the customers' histories (constant per page).
    recent = await session.execute(
        select(Customer.id, Customer.last_activity_at).where(
            scope_condition(Customer, actor), Customer.id.in_(ids)
        )
    )
    contacted = {
        cid: at is not None and now - RECENT_CONTACT <= fields.stored_instant(at)
        for cid, at in recent.all()
    }
    open_counts: dict[uuid.UUID, int] | None = None
    if allows(actor, Action.READ_CONVERSATIONS):
        open_rows = await session.execute(
            conversations.CONVERSATIONS.statement(actor)
            .where(
                Conversation.customer_id.in_(ids),
                Conversation.status.in_((ConversationStatus.OPEN, ConversationStatus.PENDING)),
            )
            .with_only_columns(Conversation.customer_id, func.count())
            .group_by(Conversation.customer_id)
        )
        open_counts = {cid: int(n) for cid, n in open_rows.all()}
    return {
        cid: OrderRhythm(
            orders=int(n),
            usual_interval_days=float(median_gap),
            days_since_last_order=max(
                (now - fields.stored_instant(last_at)).total_seconds() / 86400, 0.0
            ),
            last_amount=last_amount,
            previous_average=previous,
            open_conversations=None if open_counts is None else open_counts.get(cid, 0),
            contacted_recently=contacted.get(cid, False),
        )
        for cid, n, median_gap, last_at, last_amount, previous in rows
        if median_gap is not None  # every gap involves an infinite instant: no rhythm
    }


async def churn_risks(
    actor: Actor,
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
) -> dict[uuid.UUID, ChurnRisk | None]:
    """Churn risk per customer; None for one with fewer than two orders (no usual
    interval to compare with) or that the actor cannot see."""
    rhythms = await order_rhythms(actor, session, customer_ids, now=now)
    return {cid: churn_risk_of(rhythms[cid]) if cid in rhythms else None for cid in customer_ids}


__all__ = [
    "Basis",
    "ChurnRisk",
    "OrderRhythm",
    "Recommendation",
    "RiskLevel",
    "churn_risk_of",
    "churn_risks",
    "order_rhythms",
    "purchases",
    "recommendations",
    "recommendations_for",
]
