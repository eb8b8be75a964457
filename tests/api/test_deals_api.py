"""Pipelines, stages and deals through GraphQL over HTTP: the board, moving deals, errors."""

from __future__ import annotations

from typing import Any

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Role, User
from tests import support
from tests.api.conftest import StatementCounter
from tests.documents import CREATE_CUSTOMER

CREATE_PIPELINE = """mutation($i: CreatePipelineInput!) {
  createPipeline(input: $i) {
    pipeline { id name version stages { id name position probability } }
    errors { code field message }
  }
}"""
CREATE_STAGE = """mutation($i: CreateStageInput!) {
  createStage(input: $i) {
    stage { id name position pipeline { id } }
    errors { code field message }
  }
}"""
CREATE_DEAL = """mutation($i: CreateDealInput!) {
  createDeal(input: $i) {
    deal {
      id title amount currency status version
      stage { id name } pipeline { id } customer { id }
    }
    errors { code field message }
  }
}"""
UPDATE_DEAL = """mutation($i: UpdateDealInput!) {
  updateDeal(input: $i) { deal { id title status closedAt version } errors { code field message } }
}"""
MOVE_DEAL = """mutation($i: MoveDealInput!) {
  moveDeal(input: $i) { deal { id version stage { id name } } errors { code field message } }
}"""
DEAL_TIMELINE = """query($id: ID!) {
  node(id: $id) {
    ... on Deal {
      title
      activities {
        totalCount
        nodes { type subject details author { id } customer { id } deal { id } }
      }
    }
  }
}"""
BOARD = """{
  pipelines {
    totalCount
    nodes { name stages { name deals { totalCount nodes { title } } } }
  }
}"""


def payload(result: support.GraphQLResponse, field: str) -> dict[str, Any]:
    return result.ok()[field]  # type: ignore[no-any-return]


def created(result: support.GraphQLResponse, field: str, entity: str) -> dict[str, Any]:
    body = payload(result, field)
    assert body["errors"] == [], body
    return body[entity]  # type: ignore[no-any-return]


async def make_pipeline(
    client: support.GraphQLClient,
    name: str = "Sales",
    stages: tuple[str, ...] = ("Lead", "Proposal", "Won"),
) -> dict[str, Any]:
    stage_inputs = [{"name": s, "probability": 10 * (i + 1)} for i, s in enumerate(stages)]
    result = await client(CREATE_PIPELINE, {"i": {"name": name, "stages": stage_inputs}})
    return created(result, "createPipeline", "pipeline")


async def make_deal(client: support.GraphQLClient, **fields: Any) -> dict[str, Any]:
    return created(await client(CREATE_DEAL, {"i": fields}), "createDeal", "deal")


async def test_create_pipeline_with_stages_in_order(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    pipeline = await make_pipeline(as_role[Role.ADMIN], stages=("Lead", "Proposal", "Won"))
    assert [s["name"] for s in pipeline["stages"]] == ["Lead", "Proposal", "Won"]
    assert [s["position"] for s in pipeline["stages"]] == [0, 1, 2]
    assert [s["probability"] for s in pipeline["stages"]] == [10, 20, 30]
    added = created(
        await as_role[Role.MANAGER](
            CREATE_STAGE, {"i": {"pipelineId": pipeline["id"], "name": "Lost"}}
        ),
        "createStage",
        "stage",
    )
    assert added["position"] == 3 and added["pipeline"]["id"] == pipeline["id"]


async def test_move_deal_adds_stage_change_to_the_deal_timeline(
    as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    admin = as_role[Role.ADMIN]
    pipeline = await make_pipeline(admin)
    lead, proposal = pipeline["stages"][0], pipeline["stages"][1]
    customer = created(
        await admin(CREATE_CUSTOMER, {"i": {"name": "Buyer"}}), "createCustomer", "customer"
    )
    deal = await make_deal(
        admin,
        title="Big one",
        pipelineId=pipeline["id"],
        amount="1200.50",
        currency="eur",
        customerId=customer["id"],
    )
    assert deal["stage"] == {"id": lead["id"], "name": "Lead"}  # lands in the first stage
    assert deal["amount"] == "1200.50" and deal["currency"] == "EUR" and deal["status"] == "OPEN"
    assert deal["customer"] == {"id": customer["id"]}

    moved = payload(
        await admin(
            MOVE_DEAL, {"i": {"id": deal["id"], "stageId": proposal["id"], "expectedVersion": 1}}
        ),
        "moveDeal",
    )
    assert moved["errors"] == []
    assert moved["deal"]["stage"] == {"id": proposal["id"], "name": "Proposal"}
    assert moved["deal"]["version"] == 2

    timeline = (await admin(DEAL_TIMELINE, {"id": deal["id"]})).ok()["node"]["activities"]
    assert timeline["totalCount"] == 1
    entry = timeline["nodes"][0]
    assert entry["type"] == "STAGE_CHANGE"
    assert entry["subject"] == "Moved from Lead to Proposal"
    assert isinstance(entry["details"], dict) and entry["details"]  # from/to stages
    assert entry["author"] == {"id": to_global_id("User", users[Role.ADMIN].id)}
    assert entry["deal"] == {"id": deal["id"]}
    assert entry["customer"] == {"id": customer["id"]}  # also on the customer's timeline


async def test_a_move_reads_its_stages_once_and_its_payload_without_a_session(
    as_role: dict[Role, support.GraphQLClient], counter: StatementCounter
) -> None:
    """M1's move (issue 14, point 4): the stages it leaves and enters in one statement
    of its transaction; the payload's stage after the commit on a plain connection (one
    statement, no ORM session and no transaction around it)."""
    admin = as_role[Role.ADMIN]
    pipeline = await make_pipeline(admin)
    lead, proposal = pipeline["stages"][0], pipeline["stages"][1]
    deal = await make_deal(
        admin, title="Counted", pipelineId=pipeline["id"], amount="10", currency="EUR"
    )
    assert deal["stage"]["id"] == lead["id"]
    counter.statements.clear()
    moved = payload(
        await admin(MOVE_DEAL, {"i": {"id": deal["id"], "stageId": proposal["id"]}}), "moveDeal"
    )
    assert moved["errors"] == []
    assert moved["deal"]["stage"] == {"id": proposal["id"], "name": proposal["name"]}
    stage_reads = [s for s in counter.statements if "FROM stages" in s or "JOIN stages" in s]
    assert len(stage_reads) == 1, counter.statements  # 3 before: target, source, payload
    # ... read with the deal itself (one statement, two locking clauses).
    assert "FOR UPDATE OF deals FOR KEY SHARE OF stages" in stage_reads[0]


async def test_board_counts_deals_per_stage(as_role: dict[Role, support.GraphQLClient]) -> None:
    admin = as_role[Role.ADMIN]
    pipeline = await make_pipeline(admin, stages=("Lead", "Won"))
    lead, won = pipeline["stages"]
    for title in ("A", "B"):
        await make_deal(
            admin, title=title, stageId=lead["id"], currency="USD"
        )  # pipeline from stage
    await make_deal(admin, title="C", pipelineId=pipeline["id"], stageId=won["id"], currency="USD")

    board = (await admin(BOARD)).ok()["pipelines"]
    assert board["totalCount"] == 1
    stages = board["nodes"][0]["stages"]
    assert [(s["name"], s["deals"]["totalCount"]) for s in stages] == [("Lead", 2), ("Won", 1)]
    assert sorted(d["title"] for d in stages[0]["deals"]["nodes"]) == ["A", "B"]


async def test_update_deal_with_stale_version_conflicts(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    pipeline = await make_pipeline(as_role[Role.ADMIN])
    deal = await make_deal(agent, title="Versioned", pipelineId=pipeline["id"], currency="EUR")
    won = payload(
        await agent(UPDATE_DEAL, {"i": {"id": deal["id"], "status": "WON", "expectedVersion": 1}}),
        "updateDeal",
    )
    assert won["errors"] == [] and won["deal"]["version"] == 2 and won["deal"]["closedAt"]

    stale = payload(
        await agent(UPDATE_DEAL, {"i": {"id": deal["id"], "title": "Late", "expectedVersion": 1}}),
        "updateDeal",
    )
    assert stale["deal"] is None
    assert stale["errors"][0]["code"] == "CONFLICT"
    stale_move = payload(
        await agent(
            MOVE_DEAL,
            {"i": {"id": deal["id"], "stageId": pipeline["stages"][1]["id"], "expectedVersion": 1}},
        ),
        "moveDeal",
    )
    assert stale_move["errors"][0]["code"] == "CONFLICT"
    again = (
        await agent(
            "query($id: ID!) { node(id: $id) { ... on Deal { title version stage { name } } } }",
            {"id": deal["id"]},
        )
    ).ok()
    assert again["node"] == {"title": "Versioned", "version": 2, "stage": {"name": "Lead"}}


async def test_move_to_a_stage_of_another_pipeline_is_refused(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    first = await make_pipeline(admin, name="One")
    second = await make_pipeline(admin, name="Two")
    deal = await make_deal(admin, title="Stays", pipelineId=first["id"], currency="EUR")
    result = payload(
        await admin(MOVE_DEAL, {"i": {"id": deal["id"], "stageId": second["stages"][1]["id"]}}),
        "moveDeal",
    )
    assert result["deal"] is None
    assert result["errors"][0]["code"] == "VALIDATION" and result["errors"][0]["field"] == "stageId"
    # A global ID of another type is an unknown stage.
    wrong_type = payload(
        await admin(MOVE_DEAL, {"i": {"id": deal["id"], "stageId": first["id"]}}), "moveDeal"
    )
    assert wrong_type["errors"][0]["code"] == "NOT_FOUND"


async def test_roles_limit_who_changes_the_board(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent_pipeline = payload(
        await as_role[Role.AGENT](CREATE_PIPELINE, {"i": {"name": "Mine"}}), "createPipeline"
    )
    assert agent_pipeline["pipeline"] is None and agent_pipeline["errors"][0]["code"] == "FORBIDDEN"
    pipeline = await make_pipeline(as_role[Role.MANAGER])
    viewer_deal = payload(
        await as_role[Role.VIEWER](
            CREATE_DEAL, {"i": {"title": "No", "pipelineId": pipeline["id"], "currency": "EUR"}}
        ),
        "createDeal",
    )
    assert viewer_deal["deal"] is None and viewer_deal["errors"][0]["code"] == "FORBIDDEN"
    listed = (
        await as_role[Role.VIEWER]("{ deals { totalCount } pipelines { nodes { name } } }")
    ).ok()
    assert listed["deals"]["totalCount"] == 0
    assert [p["name"] for p in listed["pipelines"]["nodes"]] == ["Sales"]


async def test_deals_filter_by_stage_and_status(as_role: dict[Role, support.GraphQLClient]) -> None:
    admin = as_role[Role.ADMIN]
    pipeline = await make_pipeline(admin, stages=("Lead", "Won"))
    lead, won = pipeline["stages"]
    await make_deal(admin, title="Open lead", stageId=lead["id"], currency="EUR", amount="10")
    await make_deal(
        admin, title="Closed", stageId=won["id"], currency="EUR", amount="500", status="WON"
    )
    query = """query($f: DealFilter) {
      deals(filter: $f, orderBy: [{field: TITLE}]) { nodes { title } }
    }"""

    async def titles(filter: dict[str, Any]) -> list[str]:
        return [n["title"] for n in (await admin(query, {"f": filter})).ok()["deals"]["nodes"]]

    assert await titles({"stageId": {"eq": lead["id"]}}) == ["Open lead"]
    assert await titles({"status": {"in": ["WON", "LOST"]}}) == ["Closed"]
    assert await titles({"amount": {"gte": "100"}}) == ["Closed"]
    assert await titles(
        {"pipelineId": {"eq": pipeline["id"]}, "not": {"status": {"eq": "WON"}}}
    ) == ["Open lead"]
