// The users of the workspace (owners of customers, assignees of conversations), read once
// per page with the `Owners` query.
import { useQuery } from "@urql/preact";

import OwnersDocument from "./operations/Owners.graphql";
import type { Role } from "./session";

export interface TeamMember {
  id: string;
  name: string;
  role: Role;
}

/** Every user, by name (an empty list while loading). */
export function useTeam(): TeamMember[] {
  const [owners] = useQuery<{ users: { nodes: TeamMember[] } }>({ query: OwnersDocument });
  return owners.data?.users.nodes ?? [];
}
