import { useMutation, useQuery, useSubscription } from "@urql/preact";
import { useState } from "preact/hooks";

import CreateActivityDocument from "../operations/CreateActivity.graphql";
import CustomerDocument from "../operations/Customer.graphql";
import CustomerActivityFeedDocument from "../operations/CustomerActivityFeed.graphql";
import ArchiveCustomerDocument from "../operations/ArchiveCustomer.graphql";
import UpdateCustomerDocument from "../operations/UpdateCustomer.graphql";
import { useReloadOnReconnect } from "../live";
import { Link, navigate } from "../router";
import type { UserError } from "../session";
import { useTeam } from "../team";
import { ContactFields, type Contact, contactInput } from "./customers";
import {
  Empty,
  ErrorState,
  FieldError,
  FormActions,
  FormErrors,
  Loading,
  TextField,
  answered,
  formatDate,
  formatDateTime,
  formatMoney,
  humanize,
} from "../ui";

interface Named {
  id: string;
  name: string;
}

interface CustomerData {
  node: {
    id: string;
    version: number;
    name: string;
    email: string | null;
    phone: string | null;
    lifecycleStage: string;
    tags: string[];
    needs: string[];
    createdAt: string;
    lastActivityAt: string | null;
    address: {
      street: string | null;
      city: string | null;
      region: string | null;
      postalCode: string | null;
      country: string | null;
    } | null;
    company: (Named & { domain: string | null; industry: string | null; phone: string | null }) | null;
    owner: (Named & { email: string }) | null;
    purchaseSummary: {
      orderCount: number;
      totals: { amount: string; currency: string }[];
      firstOrderAt: string | null;
      lastOrderAt: string | null;
    };
    deals: {
      totalCount: number;
      nodes: {
        id: string;
        title: string;
        amount: string;
        currency: string;
        status: string;
        expectedCloseDate: string | null;
        pipeline: Named | null;
        stage: Named | null;
        owner: Named | null;
      }[];
    };
    orders: {
      totalCount: number;
      nodes: { id: string; number: string; status: string; amount: string; currency: string; placedAt: string }[];
    };
    activities: {
      totalCount: number;
      nodes: {
        id: string;
        type: string;
        subject: string;
        body: string | null;
        occurredAt: string;
        author: Named | null;
      }[];
    };
    conversations: {
      totalCount: number;
      nodes: {
        id: string;
        channel: string;
        status: string;
        subject: string | null;
        lastMessageAt: string | null;
        unreadCount: number | null;
        assignee: Named | null;
        lastMessage: { body: string } | null;
      }[];
    };
  } | null;
}

type Customer = NonNullable<CustomerData["node"]>;

export function CustomerPage(props: { id: string; writable: boolean; manager: boolean }) {
  const [editing, setEditing] = useState(false);
  const [result, reexecute] = useQuery<CustomerData>({
    query: CustomerDocument,
    variables: { id: props.id },
  });
  // Live: an activity logged for this customer anywhere (another agent, an integration)
  // reloads the page's data.
  useSubscription({ query: CustomerActivityFeedDocument, variables: { customerId: props.id } }, (_, event) => {
    reexecute({ requestPolicy: "network-only" });
    return event;
  });

  useReloadOnReconnect(() => reexecute({ requestPolicy: "network-only" }));

  const back = (
    <p class="back">
      <Link href="/customers">← Customers</Link>
    </p>
  );
  if (result.error && !result.data) {
    return (
      <section>
        {back}
        <ErrorState error={result.error} retry={() => reexecute({ requestPolicy: "network-only" })} />
      </section>
    );
  }
  if (!result.data) return <Loading what="the customer" />;
  const customer = result.data.node;
  if (!customer) {
    return (
      <section>
        {back}
        <Empty>This customer does not exist or is not visible to you.</Empty>
      </section>
    );
  }
  return (
    <article aria-labelledby="customer-title">
      {back}
      <div class="page-head">
        <h1 id="customer-title">{customer.name}</h1>
        <span class="stage" data-stage={customer.lifecycleStage}>
          {humanize(customer.lifecycleStage)}
        </span>
        <div class="head-actions">
          {props.writable && !editing && (
            <button type="button" onClick={() => setEditing(true)}>
              Edit
            </button>
          )}
          {props.manager && <ArchiveButton customer={customer} />}
        </div>
      </div>
      {editing && (
        <EditCustomer
          customer={customer}
          onDone={(saved) => {
            setEditing(false);
            if (saved) reexecute({ requestPolicy: "network-only" });
          }}
        />
      )}
      <div class="cards">
        <Contact customer={customer} />
        <CompanyCard customer={customer} />
        <Purchases customer={customer} />
      </div>
      <Deals customer={customer} />
      <Orders customer={customer} />
      <div class="columns">
        <Timeline customer={customer} writable={props.writable} onLogged={() => reexecute({ requestPolicy: "network-only" })} />
        <Conversations customer={customer} />
      </div>
    </article>
  );
}

function Row(props: { label: string; value: string | null | undefined }) {
  return (
    <>
      <dt>{props.label}</dt>
      <dd>{props.value || "—"}</dd>
    </>
  );
}

function Contact({ customer }: { customer: Customer }) {
  const a = customer.address;
  const address = a ? [a.street, [a.postalCode, a.city].filter(Boolean).join(" "), a.region, a.country].filter(Boolean).join(", ") : null;
  return (
    <section class="card" aria-labelledby="contact-title">
      <h2 id="contact-title">Contact</h2>
      <dl>
        <Row label="Email" value={customer.email} />
        <Row label="Phone" value={customer.phone} />
        <Row label="Address" value={address} />
        <Row label="Owner" value={customer.owner?.name} />
        <Row label="Tags" value={customer.tags.join(", ")} />
        <Row label="Needs" value={customer.needs.join(", ")} />
        <Row label="Customer since" value={formatDate(customer.createdAt)} />
      </dl>
    </section>
  );
}

function CompanyCard({ customer }: { customer: Customer }) {
  const company = customer.company;
  return (
    <section class="card" aria-labelledby="company-title">
      <h2 id="company-title">Company</h2>
      {company ? (
        <dl>
          <Row label="Name" value={company.name} />
          <Row label="Domain" value={company.domain} />
          <Row label="Industry" value={company.industry} />
          <Row label="Phone" value={company.phone} />
        </dl>
      ) : (
        <Empty>No company.</Empty>
      )}
    </section>
  );
}

function Purchases({ customer }: { customer: Customer }) {
  const summary = customer.purchaseSummary;
  return (
    <section class="card" aria-labelledby="purchases-title">
      <h2 id="purchases-title">Purchases</h2>
      <dl>
        <Row label="Orders" value={String(summary.orderCount)} />
        <Row label="Total" value={summary.totals.map((t) => formatMoney(t.amount, t.currency)).join(" + ")} />
        <Row label="First order" value={formatDate(summary.firstOrderAt)} />
        <Row label="Last order" value={formatDate(summary.lastOrderAt)} />
      </dl>
    </section>
  );
}

function Deals({ customer }: { customer: Customer }) {
  const deals = customer.deals;
  return (
    <section aria-labelledby="deals-title">
      <h2 id="deals-title">Deals ({deals.totalCount})</h2>
      {deals.nodes.length === 0 ? (
        <Empty>No deals.</Empty>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col">Pipeline</th>
                <th scope="col">Stage</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">
                  Amount
                </th>
                <th scope="col">Owner</th>
                <th scope="col">Expected close</th>
              </tr>
            </thead>
            <tbody>
              {deals.nodes.map((d) => (
                <tr key={d.id}>
                  <td>{d.title}</td>
                  <td>{d.pipeline?.name ?? "—"}</td>
                  <td>{d.stage?.name ?? "—"}</td>
                  <td>{humanize(d.status)}</td>
                  <td class="num">{formatMoney(d.amount, d.currency)}</td>
                  <td>{d.owner?.name ?? "—"}</td>
                  <td>{formatDate(d.expectedCloseDate)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Orders({ customer }: { customer: Customer }) {
  const orders = customer.orders;
  return (
    <section aria-labelledby="orders-title">
      <h2 id="orders-title">Orders ({orders.totalCount})</h2>
      {orders.nodes.length === 0 ? (
        <Empty>No orders.</Empty>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Number</th>
                <th scope="col">Placed</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">
                  Amount
                </th>
              </tr>
            </thead>
            <tbody>
              {orders.nodes.map((o) => (
                <tr key={o.id}>
                  <td>{o.number}</td>
                  <td>{formatDate(o.placedAt)}</td>
                  <td>{humanize(o.status)}</td>
                  <td class="num">{formatMoney(o.amount, o.currency)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Timeline(props: { customer: Customer; writable: boolean; onLogged: () => void }) {
  const activities = props.customer.activities;
  return (
    <section aria-labelledby="timeline-title">
      <h2 id="timeline-title">Activity ({activities.totalCount})</h2>
      {props.writable && <NoteForm customerId={props.customer.id} onLogged={props.onLogged} />}
      {activities.nodes.length === 0 ? (
        <Empty>No activity yet.</Empty>
      ) : (
        <ol class="timeline">
          {activities.nodes.map((a) => (
            <li key={a.id}>
              <span class="kind">{humanize(a.type)}</span>
              <time dateTime={a.occurredAt}>{formatDateTime(a.occurredAt)}</time>
              <p class="subject">{a.subject}</p>
              {a.body && <p class="body">{a.body}</p>}
              {a.author && <p class="author">by {a.author.name}</p>}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

interface CreateActivityData {
  createActivity: { activity: { id: string } | null; errors: UserError[] };
}

function NoteForm(props: { customerId: string; onLogged: () => void }) {
  const [subject, setSubject] = useState("");
  const [body, setBody] = useState("");
  const [errors, setErrors] = useState<UserError[]>([]);
  const [state, create] = useMutation<CreateActivityData>(CreateActivityDocument);

  async function submit(event: Event) {
    event.preventDefault();
    const input = { type: "NOTE", subject, body: body || null, customerId: props.customerId };
    const result = await create({ input });
    const payload = answered(result.data?.createActivity, result.error, setErrors);
    if (!payload) return;
    if (payload.activity) {
      setSubject("");
      setBody("");
      props.onLogged();
    }
  }

  return (
    <form class="note" onSubmit={submit} aria-label="Log a note" noValidate>
      <TextField id="note-subject" label="Note" field="subject" errors={errors} value={subject} onInput={setSubject} />
      <label for="note-body">Details</label>
      <textarea id="note-body" rows={2} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
      <FormErrors errors={errors} fields={["subject"]} />
      <button type="submit" class="primary" disabled={state.fetching}>
        {state.fetching ? "Saving…" : "Log note"}
      </button>
    </form>
  );
}

function Conversations({ customer }: { customer: Customer }) {
  const conversations = customer.conversations;
  return (
    <section aria-labelledby="conversations-title">
      <h2 id="conversations-title">Conversations ({conversations.totalCount})</h2>
      {conversations.nodes.length === 0 ? (
        <Empty>No conversations.</Empty>
      ) : (
        <ul class="conversations">
          {conversations.nodes.map((c) => (
            <li key={c.id}>
              <p>
                <strong>{c.subject ?? "(no subject)"}</strong>
                {c.unreadCount ? <span class="unread">{c.unreadCount} unread</span> : null}
              </p>
              <p class="meta">
                {humanize(c.channel)} · {humanize(c.status)} · {c.assignee ? c.assignee.name : "unassigned"} ·{" "}
                {formatDateTime(c.lastMessageAt)}
              </p>
              {c.lastMessage && <p class="body">{c.lastMessage.body}</p>}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

const EDIT_FIELDS = ["name", "email", "phone", "lifecycleStage", "ownerId", "tags"];

/** Edit the contact fields with `updateCustomer` (expectedVersion: a change made
 * elsewhere meanwhile is refused, not overwritten); the API's errors show at their field. */
function EditCustomer(props: { customer: Customer; onDone: (saved: boolean) => void }) {
  const c = props.customer;
  const team = useTeam();
  const [contact, setContact] = useState<Contact>({
    name: c.name,
    email: c.email ?? "",
    phone: c.phone ?? "",
    lifecycleStage: c.lifecycleStage,
  });
  const [owner, setOwner] = useState(c.owner?.id ?? "");
  const [tags, setTags] = useState(c.tags.join(", "));
  const [errors, setErrors] = useState<UserError[]>([]);
  const [state, update] = useMutation<{ updateCustomer: { customer: { id: string } | null; errors: UserError[] } }>(UpdateCustomerDocument);

  async function submit(event: Event) {
    event.preventDefault();
    const input = {
      id: c.id,
      expectedVersion: c.version,
      ...contactInput(contact),
      ownerId: owner || null,
      tags: tags.split(",").map((t) => t.trim()).filter(Boolean),
    };
    const result = await update({ input });
    const payload = result.data?.updateCustomer;
    if (!payload) {
      setErrors([{ code: "NETWORK", field: null, message: result.error?.message ?? "Not saved." }]);
      return;
    }
    if (payload.errors.some((e) => e.code === "CONFLICT")) {
      setErrors([{ code: "CONFLICT", field: null, message: "Someone else changed this customer meanwhile: close the form to see the latest, then edit again." }]);
      return;
    }
    setErrors(payload.errors);
    if (payload.customer) props.onDone(true);
  }

  return (
    <form class="panel" onSubmit={submit} aria-labelledby="edit-customer-title" noValidate>
      <h2 id="edit-customer-title">Edit customer</h2>
      <div class="grid">
        <ContactFields prefix="edit" errors={errors} value={contact} onChange={setContact} />
        <div class="field">
          <label for="edit-owner">Owner</label>
          <select id="edit-owner" value={owner} onChange={(e) => setOwner(e.currentTarget.value)} aria-describedby="edit-owner-error">
            <option value="">No owner</option>
            {team.map((u) => (
              <option key={u.id} value={u.id}>
                {u.name}
              </option>
            ))}
          </select>
          <FieldError errors={errors} field="ownerId" id="edit-owner-error" />
        </div>
        <TextField id="edit-tags" label="Tags (comma-separated)" field="tags" errors={errors} value={tags} onInput={setTags} />
      </div>
      <FormErrors errors={errors} fields={EDIT_FIELDS} />
      <FormActions busy={state.fetching} submit="Save" onCancel={() => props.onDone(false)} />
    </form>
  );
}

/** A manager's action: archive the customer (asks once more before it does). */
function ArchiveButton(props: { customer: Customer }) {
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [, archive] = useMutation<{ archiveCustomer: { customer: { id: string } | null; errors: UserError[] } }>(ArchiveCustomerDocument);
  async function confirm() {
    const result = await archive({ input: { id: props.customer.id, expectedVersion: props.customer.version } });
    const payload = result.data?.archiveCustomer;
    if (payload?.customer) navigate("/customers");
    else setError(payload?.errors[0]?.message ?? result.error?.message ?? "Not archived.");
  }
  if (!asking) {
    return (
      <button type="button" class="danger" onClick={() => setAsking(true)}>
        Archive
      </button>
    );
  }
  return (
    <span class="confirm" role="group" aria-label="Archive this customer?">
      {error && <span class="field-error" role="alert">{error} </span>}
      <button type="button" class="danger" onClick={() => void confirm()}>
        Archive {props.customer.name}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
