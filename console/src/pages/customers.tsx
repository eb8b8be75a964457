import { useMutation, useQuery } from "@urql/preact";
import { useEffect, useMemo, useState } from "preact/hooks";

import { type Drill, DrillBanner, both } from "../drill";
import CreateCustomerDocument from "../operations/CreateCustomer.graphql";
import CreateSegmentDocument from "../operations/CreateSegment.graphql";
import CustomersDocument from "../operations/Customers.graphql";
import SegmentsDocument from "../operations/Segments.graphql";
import { Link, navigate } from "../router";
import type { UserError } from "../session";
import { useTeam } from "../team";
import { Empty, ErrorState, FormActions, FormErrors, Loading, Pager, TextField, answered, formatDate, humanize } from "../ui";

export const LIFECYCLE_STAGES = [
  "SUBSCRIBER",
  "LEAD",
  "QUALIFIED",
  "OPPORTUNITY",
  "CUSTOMER",
  "EVANGELIST",
  "CHURNED",
] as const;

/** An option per lifecycle stage, for a select. */
function StageOptions() {
  return (
    <>
      {LIFECYCLE_STAGES.map((s) => (
        <option key={s} value={s}>
          {humanize(s)}
        </option>
      ))}
    </>
  );
}

const PAGE_SIZE = 25;
const TYPING_PAUSE_MS = 250;

type SortField = "NAME" | "EMAIL" | "LIFECYCLE_STAGE" | "LAST_ACTIVITY_AT" | "CREATED_AT";
type Direction = "ASC" | "DESC";

interface CustomerRow {
  id: string;
  name: string;
  email: string | null;
  lifecycleStage: string;
  tags: string[];
  lastActivityAt: string | null;
  company: { id: string; name: string } | null;
  owner: { id: string; name: string } | null;
}

interface CustomersData {
  customers: {
    totalCount: number;
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
    nodes: CustomerRow[];
  };
}

interface Segment {
  id: string;
  name: string;
  builtIn: boolean;
  shared: boolean;
  filter: Record<string, unknown> | null;
  rfmSegment: string | null;
}

interface SegmentsData {
  segments: { nodes: Segment[] };
}

/** A segment as a CustomerFilter: a saved one's filter, a built-in one's RFM segment. */
function segmentFilter(segment: Segment): Record<string, unknown> | null {
  if (segment.filter) return segment.filter;
  return segment.rfmSegment ? { rfmSegment: { eq: segment.rfmSegment } } : null;
}

/** `value`, once it has not changed for `ms` (search as you type without a request per key). */
function useSettled<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

interface Filters {
  text: string;
  stage: string;
  owner: string;
  tag: string;
}

/** The API's CustomerFilter for what the user picked (every condition must hold). */
function customerFilter(filters: Filters): Record<string, unknown> | null {
  const all: Record<string, unknown>[] = [];
  const text = filters.text.trim();
  if (text) all.push({ or: [{ name: { contains: text } }, { email: { contains: text } }] });
  if (filters.stage) all.push({ lifecycleStage: { eq: filters.stage } });
  if (filters.owner === "none") all.push({ ownerId: { isNull: true } });
  else if (filters.owner) all.push({ ownerId: { eq: filters.owner } });
  const tag = filters.tag.trim();
  if (tag) all.push({ tags: { contains: [tag] } });
  return all.length ? { and: all } : null;
}

const COLUMNS: { label: string; sort?: SortField }[] = [
  { label: "Name", sort: "NAME" },
  { label: "Email", sort: "EMAIL" },
  { label: "Company" },
  { label: "Owner" },
  { label: "Stage", sort: "LIFECYCLE_STAGE" },
  { label: "Tags" },
  { label: "Last activity", sort: "LAST_ACTIVITY_AT" },
];

export function CustomersPage(props: { writable: boolean; drill?: Drill | null }) {
  const [text, setText] = useState("");
  const [tag, setTag] = useState("");
  const [stage, setStage] = useState("");
  const [owner, setOwner] = useState("");
  const [segment, setSegment] = useState("");
  const [sort, setSort] = useState<{ field: SortField; direction: Direction }>({
    field: "CREATED_AT",
    direction: "DESC",
  });
  // Keyset paging: the `after` cursor of each page seen, so Previous goes back.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [creating, setCreating] = useState(false);

  const settledText = useSettled(text, TYPING_PAUSE_MS);
  const settledTag = useSettled(tag, TYPING_PAUSE_MS);
  const drill = props.drill ?? null;
  const filter = useMemo(
    () => both(drill?.filter, customerFilter({ text: settledText, stage, owner, tag: settledTag })),
    [settledText, stage, owner, settledTag, drill],
  );
  useEffect(() => setCursors([null]), [filter, sort, segment]);

  const after = cursors[cursors.length - 1];
  const variables = useMemo(
    () => ({
      first: PAGE_SIZE,
      after,
      filter,
      orderBy: [{ field: sort.field, direction: sort.direction }],
      segmentId: segment || null,
    }),
    [after, filter, sort, segment],
  );
  const [result, reexecute] = useQuery<CustomersData>({ query: CustomersDocument, variables });
  const team = useTeam();
  const [segments, reloadSegments] = useQuery<SegmentsData>({ query: SegmentsDocument });
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState<string | null>(null);
  const segmentList = segments.data?.segments.nodes ?? [];
  const chosen = segmentList.find((s) => s.id === segment) ?? null;
  // What "Save as segment" saves: the filters shown, within the segment chosen (if any).
  const toSave = both(chosen ? segmentFilter(chosen) : null, filter);
  const savable = props.writable && filter !== null && toSave !== null;

  function toggleSort(field: SortField) {
    setSort((current) =>
      current.field === field
        ? { field, direction: current.direction === "ASC" ? "DESC" : "ASC" }
        : { field, direction: field === "LAST_ACTIVITY_AT" ? "DESC" : "ASC" },
    );
  }

  const data = result.data?.customers;

  return (
    <section aria-labelledby="customers-title">
      <div class="page-head">
        <h1 id="customers-title">Customers</h1>
        {props.writable && !creating && (
          <button type="button" class="primary" onClick={() => setCreating(true)}>
            New customer
          </button>
        )}
      </div>
      {props.writable && creating && <NewCustomer onCancel={() => setCreating(false)} />}

      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <div class="field grow">
          <label for="customer-search">Search</label>
          <input
            id="customer-search"
            type="search"
            placeholder="Name or email"
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="customer-stage">Lifecycle stage</label>
          <select id="customer-stage" value={stage} onChange={(e) => setStage(e.currentTarget.value)}>
            <option value="">Any stage</option>
            <StageOptions />
          </select>
        </div>
        <div class="field">
          <label for="customer-owner">Owner</label>
          <select id="customer-owner" value={owner} onChange={(e) => setOwner(e.currentTarget.value)}>
            <option value="">Anyone</option>
            <option value="none">No owner</option>
            {team.map((u) => (
              <option key={u.id} value={u.id}>
                {u.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="customer-segment">Segment</label>
          <select id="customer-segment" value={segment} onChange={(e) => setSegment(e.currentTarget.value)}>
            <option value="">All customers</option>
            <SegmentOptions label="Saved segments" segments={segmentList.filter((s) => !s.builtIn)} />
            <SegmentOptions label="RFM segments" segments={segmentList.filter((s) => s.builtIn)} />
          </select>
        </div>
        <div class="field">
          <label for="customer-tag">Tag</label>
          <input id="customer-tag" type="text" value={tag} onInput={(e) => setTag(e.currentTarget.value)} />
        </div>
        {savable && !saving && (
          <div class="field end">
            <button type="button" onClick={() => { setSaving(true); setSaved(null); }}>
              Save as segment
            </button>
          </div>
        )}
      </form>
      {drill && <DrillBanner drill={drill} clear="/customers" clearLabel="Show all customers" />}
      {saving && toSave && (
        <SaveSegment
          filter={toSave}
          onCancel={() => setSaving(false)}
          onSaved={(saved) => {
            // The new segment is the filter now: choose it, clear what it holds.
            setSaving(false);
            setSaved(saved.name);
            reloadSegments({ requestPolicy: "network-only" });
            setSegment(saved.id);
            setText("");
            setTag("");
            setStage("");
            setOwner("");
            if (drill) navigate("/customers", true);
          }}
        />
      )}
      {saved && (
        <p class="notice" role="status">
          Saved the segment “{saved}”.
        </p>
      )}

      {result.error && !data ? (
        <ErrorState error={result.error} retry={() => reexecute({ requestPolicy: "network-only" })} />
      ) : !data ? (
        <Loading what="customers" />
      ) : (
        <>
          <p class="count" aria-live="polite">
            {data.totalCount === 1 ? "1 customer" : `${data.totalCount} customers`}
            {result.stale || result.fetching ? " · updating…" : ""}
          </p>
          {data.nodes.length === 0 ? (
            <Empty>No customers match these filters.</Empty>
          ) : (
            <div class="table-wrap">
              <table class="customers">
                <thead>
                  <tr>
                    {COLUMNS.map((column) => {
                      const sorted = column.sort === sort.field;
                      const ariaSort = sorted ? (sort.direction === "ASC" ? "ascending" : "descending") : undefined;
                      return (
                        <th key={column.label} scope="col" aria-sort={ariaSort}>
                          {column.sort ? (
                            <button type="button" class="sort" onClick={() => toggleSort(column.sort!)}>
                              {column.label}
                              <span aria-hidden="true">{sorted ? (sort.direction === "ASC" ? " ▲" : " ▼") : ""}</span>
                            </button>
                          ) : (
                            column.label
                          )}
                        </th>
                      );
                    })}
                  </tr>
                </thead>
                <tbody>
                  {data.nodes.map((c) => (
                    <tr key={c.id}>
                      <td>
                        <Link href={`/customers/${encodeURIComponent(c.id)}`}>{c.name}</Link>
                      </td>
                      <td>{c.email ?? "—"}</td>
                      <td>{c.company?.name ?? "—"}</td>
                      <td>{c.owner?.name ?? "—"}</td>
                      <td>
                        <span class="stage" data-stage={c.lifecycleStage}>
                          {humanize(c.lifecycleStage)}
                        </span>
                      </td>
                      <td>
                        {c.tags.map((t) => (
                          <span key={t} class="tag">
                            {t}
                          </span>
                        ))}
                      </td>
                      <td>{formatDate(c.lastActivityAt)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <Pager cursors={cursors} setCursors={setCursors} pageInfo={data.pageInfo} />
        </>
      )}
    </section>
  );
}

function SegmentOptions(props: { label: string; segments: Segment[] }) {
  if (!props.segments.length) return null;
  return (
    <optgroup label={props.label}>
      {props.segments.map((s) => (
        <option key={s.id} value={s.id}>
          {s.name}
          {s.shared ? " (shared)" : ""}
        </option>
      ))}
    </optgroup>
  );
}

interface CreateSegmentData {
  createSegment: { segment: Segment | null; errors: UserError[] };
}

/** Save `filter` as a segment: a name, a description, shared or not; the API's errors at
 * their field. */
function SaveSegment(props: { filter: Record<string, unknown>; onCancel: () => void; onSaved: (segment: Segment) => void }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [shared, setShared] = useState(false);
  const [errors, setErrors] = useState<UserError[]>([]);
  const [state, create] = useMutation<CreateSegmentData>(CreateSegmentDocument);

  async function submit(event: Event) {
    event.preventDefault();
    const input = { name, description: description.trim() || null, filter: props.filter, shared };
    const result = await create({ input });
    const payload = answered(result.data?.createSegment, result.error, setErrors);
    if (!payload) return;
    if (payload.segment) props.onSaved(payload.segment);
  }

  return (
    <form class="panel" onSubmit={submit} aria-labelledby="save-segment-title" noValidate>
      <h2 id="save-segment-title">Save these filters as a segment</h2>
      <div class="grid">
        <TextField id="segment-name" label="Name" field="name" errors={errors} value={name} onInput={setName} />
        <TextField id="segment-description" label="Description" field="description" errors={errors} value={description} onInput={setDescription} />
        <div class="field checkbox">
          <label>
            <input type="checkbox" checked={shared} onChange={(e) => setShared(e.currentTarget.checked)} /> Shared with the workspace
          </label>
        </div>
      </div>
      <FormErrors errors={errors} fields={["name", "description"]} />
      <FormActions busy={state.fetching} submit="Save segment" onCancel={props.onCancel} />
    </form>
  );
}

interface CreateCustomerData {
  createCustomer: { customer: { id: string } | null; errors: UserError[] };
}

const NEW_CUSTOMER_FIELDS = ["name", "email", "phone", "lifecycleStage"];

/** A customer's contact fields as a form holds them (empty text: no value). */
export interface Contact {
  name: string;
  email: string;
  phone: string;
  lifecycleStage: string;
}

/** The create / update input's part for the contact fields. */
export function contactInput(contact: Contact): Record<string, unknown> {
  const { name, email, phone, lifecycleStage } = contact;
  return { name, email: email || null, phone: phone || null, lifecycleStage };
}

/** Name, email, phone and lifecycle stage, each with the API's error about it. */
export function ContactFields(props: {
  prefix: string;
  errors: UserError[];
  value: Contact;
  onChange: (contact: Contact) => void;
}) {
  const { prefix, errors, value } = props;
  const set = (field: keyof Contact) => (text: string) => props.onChange({ ...value, [field]: text });
  return (
    <>
      <TextField id={`${prefix}-name`} label="Name" field="name" errors={errors} value={value.name} onInput={set("name")} />
      <TextField id={`${prefix}-email`} label="Email" input={{ type: "email" }} field="email" errors={errors} value={value.email} onInput={set("email")} />
      <TextField id={`${prefix}-phone`} label="Phone" input={{ type: "tel" }} field="phone" errors={errors} value={value.phone} onInput={set("phone")} />
      <div class="field">
        <label for={`${prefix}-stage`}>Lifecycle stage</label>
        <select id={`${prefix}-stage`} value={value.lifecycleStage} onChange={(e) => set("lifecycleStage")(e.currentTarget.value)}>
          <StageOptions />
        </select>
      </div>
    </>
  );
}

function NewCustomer(props: { onCancel: () => void }) {
  const [contact, setContact] = useState<Contact>({ name: "", email: "", phone: "", lifecycleStage: "LEAD" });
  const [errors, setErrors] = useState<UserError[]>([]);
  const [state, create] = useMutation<CreateCustomerData>(CreateCustomerDocument);

  async function submit(event: Event) {
    event.preventDefault();
    const input = contactInput(contact);
    const result = await create({ input });
    const payload = answered(result.data?.createCustomer, result.error, setErrors);
    if (!payload) return;
    if (payload.customer) navigate(`/customers/${encodeURIComponent(payload.customer.id)}`);
  }

  return (
    <form class="panel" onSubmit={submit} aria-labelledby="new-customer-title" noValidate>
      <h2 id="new-customer-title">New customer</h2>
      <div class="grid">
        <ContactFields prefix="new" errors={errors} value={contact} onChange={setContact} />
      </div>
      <FormErrors errors={errors} fields={NEW_CUSTOMER_FIELDS} />
      <FormActions busy={state.fetching} submit="Create customer" onCancel={props.onCancel} />
    </form>
  );
}
