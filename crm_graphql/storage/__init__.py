"""Access to workspace rows that every domain shares: list queries (typed filters,
multi-field ordering, keyset pages: ``querying``) and single records (loaded in the
actor's workspace, changed with a version check and an audit row: ``records``). Domain
services build on these; the rules of each domain stay in ``services/``."""
