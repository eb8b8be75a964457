"""Business rules: permissions, tenant scoping, transactions' content, audit and events.

Services never import strawberry. Each public function takes an ``Actor`` and a session
first and leaves the commit to the caller's unit of work.
"""
