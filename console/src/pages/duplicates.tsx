import { useMutation, useQuery } from "@urql/preact";
import { useMemo, useState } from "preact/hooks";

import DuplicateCandidatesDocument from "../operations/DuplicateCandidates.graphql";
import MergeCustomersDocument from "../operations/MergeCustomers.graphql";
import { Link } from "../router";
import type { UserError } from "../session";
import { Empty, ErrorState, FormErrors, Loading, Pager, answered, formatDate, humanize } from "../ui";

const PAGE_SIZE = 20;

interface Person {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
  company: { id: string; name: string } | null;
  createdAt: string;
}

interface Candidate {
  cursor: string;
  score: number;
  nameSimilarity: number;
  matches: { field: string; similarity: number }[];
  customer: Person;
  duplicate: Person;
}

interface CandidatesData {
  duplicateCandidates: {
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
    candidates: Candidate[];
  };
}

interface MergeData {
  mergeCustomers: { customer: { id: string; name: string } | null; errors: UserError[] };
}

function percent(value: number): string {
  return `${Math.round(value * 100)}%`;
}

function PersonCell(props: { person: Person; label: string }) {
  const p = props.person;
  return (
    <td>
      <span class="visually-hidden">{props.label}: </span>
      <Link href={`/customers/${encodeURIComponent(p.id)}`}>{p.name}</Link>
      <div class="meta">
        {[p.email, p.phone, p.company?.name].filter(Boolean).join(" · ") || "no contact details"}
      </div>
      <div class="meta">added {formatDate(p.createdAt)}</div>
    </td>
  );
}

export function DuplicatesPage(props: { mergeable: boolean }) {
  // Keyset paging: the `after` cursor of each page seen, so Previous goes back.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const after = cursors[cursors.length - 1];
  const variables = useMemo(() => ({ first: PAGE_SIZE, after }), [after]);
  const [result, reexecute] = useQuery<CandidatesData>({
    query: DuplicateCandidatesDocument,
    variables,
    requestPolicy: "cache-and-network",
  });
  const [merging, merge] = useMutation<MergeData>(MergeCustomersDocument);
  const [errors, setErrors] = useState<UserError[]>([]);
  const [merged, setMerged] = useState<string | null>(null);

  async function mergePair(candidate: Candidate) {
    setMerged(null);
    const outcome = await merge({
      input: { survivorId: candidate.customer.id, mergedIds: [candidate.duplicate.id] },
    });
    const payload = answered(outcome.data?.mergeCustomers, outcome.error, setErrors, "Not merged.");
    if (!payload) return;
    if (payload.customer) {
      setMerged(`${candidate.duplicate.name} was merged into ${payload.customer.name}.`);
      reexecute({ requestPolicy: "network-only" });
    }
  }

  const data = result.data?.duplicateCandidates;
  return (
    <section aria-labelledby="duplicates-title">
      <div class="page-head">
        <h1 id="duplicates-title">Likely duplicates</h1>
      </div>
      <p class="count">
        Customers that look like one person: the same mailbox, the same phone number, or similar
        names at the same company. {props.mergeable ? "Merge keeps the first and moves the other's history to it." : ""}
      </p>
      {merged && (
        <p class="notice" role="status">
          {merged}
        </p>
      )}
      <FormErrors errors={errors} fields={[]} />
      {result.error && !data ? (
        <ErrorState error={result.error} retry={() => reexecute({ requestPolicy: "network-only" })} />
      ) : !data ? (
        <Loading what="likely duplicates" />
      ) : data.candidates.length === 0 ? (
        <Empty>No likely duplicates.</Empty>
      ) : (
        <>
          <div class="table-wrap">
            <table class="duplicates">
              <thead>
                <tr>
                  <th scope="col" class="num">
                    Score
                  </th>
                  <th scope="col">Matches</th>
                  <th scope="col">Keep</th>
                  <th scope="col">Duplicate</th>
                  {props.mergeable && <th scope="col"><span class="visually-hidden">Actions</span></th>}
                </tr>
              </thead>
              <tbody>
                {data.candidates.map((c) => (
                  <tr key={c.cursor} data-pair={`${c.customer.id} ${c.duplicate.id}`}>
                    <td class="num">{percent(c.score)}</td>
                    <td>
                      {c.matches.map((m) => (
                        <span key={m.field} class="tag" title={`similarity ${percent(m.similarity)}`}>
                          {humanize(m.field)}
                          {m.similarity < 1 ? ` ${percent(m.similarity)}` : ""}
                        </span>
                      ))}
                      <div class="meta">names {percent(c.nameSimilarity)} alike</div>
                    </td>
                    <PersonCell person={c.customer} label="Keep" />
                    <PersonCell person={c.duplicate} label="Duplicate" />
                    {props.mergeable && (
                      <td>
                        <button
                          type="button"
                          disabled={merging.fetching}
                          aria-label={`Merge ${c.duplicate.name} into ${c.customer.name}`}
                          onClick={() => void mergePair(c)}
                        >
                          Merge
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager cursors={cursors} setCursors={setCursors} pageInfo={data.pageInfo} />
        </>
      )}
    </section>
  );
}
