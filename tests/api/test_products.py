"""The product catalogue and order lines that refer to it: CRUD and validation over
GraphQL, lines by product ID or SKU, and the SKU matching that turns ``items`` into lines
(the upgrade's backfill, ``services.products.ORDER_LINES_FROM_ITEMS``)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Customer, Order, OrderLine, Product, Role, Workspace
from crm_graphql.services import auth, products
from tests import support
from tests.factories import create_customer

CREATE = """mutation($i: CreateProductInput!) {
  createProduct(input: $i) { product { id sku name category price currency version archivedAt }
    errors { code field message } }
}"""
UPDATE = """mutation($i: UpdateProductInput!) {
  updateProduct(input: $i) { product { id sku name price version } errors { code field message } }
}"""
ARCHIVE = """mutation($i: ArchiveInput!) {
  archiveProduct(input: $i) { product { id archivedAt } errors { code field message } }
}"""
LIST = """query($filter: ProductFilter, $order: [ProductOrder!], $archived: Boolean = false) {
  products(first: 50, filter: $filter, orderBy: $order, includeArchived: $archived) {
    totalCount nodes { sku name price category }
  }
}"""
CREATE_ORDER = """mutation($i: CreateOrderInput!) {
  createOrder(input: $i) {
    order { id amount currency items
      lines { position sku name quantity unitPrice currency product { id sku } } }
    errors { code field message }
  }
}"""
UPDATE_ORDER = """mutation($i: UpdateOrderInput!) {
  updateOrder(input: $i) {
    order { id items lines { sku quantity unitPrice currency product { sku } } }
    errors { code field message }
  }
}"""


async def make_product(client: support.GraphQLClient, **fields: Any) -> dict[str, Any]:
    values = {"name": "Espresso Beans", "price": "12.50", "currency": "EUR", **fields}
    payload = (await client(CREATE, {"i": values})).ok()["createProduct"]
    assert payload["errors"] == [], payload
    return payload["product"]  # type: ignore[no-any-return]


async def test_product_crud_and_validation(as_role: dict[Role, support.GraphQLClient]) -> None:
    agent, manager = as_role[Role.AGENT], as_role[Role.MANAGER]
    beans = await make_product(agent, sku=" BEANS-1 ", category="Coffee")
    assert beans["sku"] == "BEANS-1" and beans["price"] == "12.50" and beans["version"] == 1
    await make_product(agent, sku="MUG-1", name="Mug", price="8", category="Kitchen")

    duplicate = (
        await agent(CREATE, {"i": {"sku": "beans-1", "name": "X", "price": "1", "currency": "EUR"}})
    ).ok()
    assert duplicate["createProduct"]["errors"][0]["code"] == "DUPLICATE"
    assert duplicate["createProduct"]["errors"][0]["field"] == "sku"
    for bad, field in (
        ({"price": "-1"}, "price"),
        ({"price": "1.234"}, "price"),
        ({"currency": "EURO"}, "currency"),
        ({"sku": "two words"}, "sku"),
        ({"sku": "x" * 65}, "sku"),
        ({"name": " "}, "name"),
    ):
        values = {
            "sku": f"S-{uuid.uuid4().hex[:6]}",
            "name": "N",
            "price": "1",
            "currency": "EUR",
            **bad,
        }
        payload = (await agent(CREATE, {"i": values})).ok()["createProduct"]
        assert payload["product"] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", field)]

    updated = (
        await agent(UPDATE, {"i": {"id": beans["id"], "price": "13", "expectedVersion": 1}})
    ).ok()
    assert updated["updateProduct"]["product"]["price"] == "13.00"
    stale = (
        await agent(UPDATE, {"i": {"id": beans["id"], "name": "Old", "expectedVersion": 1}})
    ).ok()
    assert stale["updateProduct"]["errors"][0]["code"] == "CONFLICT"

    listed = (await agent(LIST, {"order": [{"field": "PRICE", "direction": "DESC"}]})).ok()
    assert [n["sku"] for n in listed["products"]["nodes"]] == ["BEANS-1", "MUG-1"]
    coffee = (await agent(LIST, {"filter": {"category": {"eq": "Coffee"}}})).ok()
    assert [n["sku"] for n in coffee["products"]["nodes"]] == ["BEANS-1"]

    # Agents may not archive catalogue data; managers may.
    denied = (await agent(ARCHIVE, {"i": {"id": beans["id"]}})).ok()["archiveProduct"]
    assert denied["errors"][0]["code"] == "FORBIDDEN"
    archived = (await manager(ARCHIVE, {"i": {"id": beans["id"]}})).ok()["archiveProduct"]
    assert archived["errors"] == [] and archived["product"]["archivedAt"]
    live = (await agent(LIST)).ok()["products"]
    assert [n["sku"] for n in live["nodes"]] == ["MUG-1"] and live["totalCount"] == 1
    every = (await agent(LIST, {"archived": True})).ok()["products"]
    assert sorted(n["sku"] for n in every["nodes"]) == ["BEANS-1", "MUG-1"]

    viewer = (
        await as_role[Role.VIEWER](
            CREATE, {"i": {"sku": "V", "name": "V", "price": "1", "currency": "EUR"}}
        )
    ).ok()
    assert viewer["createProduct"]["errors"][0]["code"] == "FORBIDDEN"
    assert (await as_role[Role.VIEWER](LIST)).ok()["products"]["totalCount"] == 1


async def test_order_lines_by_product_id_or_sku(as_role: dict[Role, support.GraphQLClient]) -> None:
    agent = as_role[Role.AGENT]
    beans = await make_product(agent, sku="BEANS-1", price="12.50")
    mug = await make_product(agent, sku="Mug-1", name="Mug", price="8.00")
    dollars = await make_product(agent, sku="US-1", name="Import", price="3", currency="USD")
    customer = await create_customer(agent)
    lines = [
        {"productId": beans["id"], "quantity": "2"},
        {"sku": "mug-1"},
        {"sku": "US-1", "unitPrice": "2.75", "quantity": "1.5", "name": "Imported tea"},
    ]
    payload = (
        await agent(
            CREATE_ORDER, {"i": {"customerId": customer, "currency": "EUR", "lines": lines}}
        )
    ).ok()["createOrder"]
    assert payload["errors"] == [], payload
    order = payload["order"]
    # 2 x 12.50 + 1 x 8.00 + 1.5 x 2.75 = 37.125, rounded half up
    assert order["amount"] == "37.13"
    assert [
        (x["sku"], x["quantity"], x["unitPrice"], x["product"]["id"]) for x in order["lines"]
    ] == [
        ("BEANS-1", "2.000", "12.50", beans["id"]),
        ("Mug-1", "1.000", "8.00", mug["id"]),
        ("US-1", "1.500", "2.75", dollars["id"]),
    ]
    assert [x["currency"] for x in order["lines"]] == ["EUR"] * 3
    assert order["lines"][2]["name"] == "Imported tea"
    # `items` keeps working for clients that read it.
    assert order["items"] == [
        {"sku": "BEANS-1", "name": "Espresso Beans", "quantity": 2, "unitPrice": "12.50"},
        {"sku": "Mug-1", "name": "Mug", "quantity": 1, "unitPrice": "8.00"},
        {"sku": "US-1", "name": "Imported tea", "quantity": "1.5", "unitPrice": "2.75"},
    ]

    changed = (
        await agent(
            UPDATE_ORDER, {"i": {"id": order["id"], "lines": [{"sku": "BEANS-1", "quantity": 3}]}}
        )
    ).ok()["updateOrder"]
    assert changed["errors"] == []
    assert [(x["sku"], x["quantity"]) for x in changed["order"]["lines"]] == [("BEANS-1", "3.000")]
    assert changed["order"]["items"][0]["quantity"] == 3


async def test_bad_order_lines_are_validation_errors_with_their_path(
    as_role: dict[Role, support.GraphQLClient],
    client: support.GraphQLClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    agent = as_role[Role.AGENT]
    beans = await make_product(agent, sku="BEANS-1")
    archived = await make_product(agent, sku="OLD-1")
    await as_role[Role.MANAGER](ARCHIVE, {"i": {"id": archived["id"]}})
    await make_product(agent, sku="US-1", currency="USD")
    customer = await create_customer(agent)
    # A product of another workspace is unknown here.
    async with sessionmaker() as session, session.begin():
        other = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        foreign = Product(workspace_id=other.id, sku="BEANS-2", name="F", price=1, currency="EUR")
        session.add(foreign)
    cases = [
        ([{"sku": "BEANS-1"}, {"sku": "NOPE"}], "lines.1.sku"),
        ([{"productId": to_global_id("Product", foreign.id)}], "lines.0.productId"),
        ([{"sku": "BEANS-2"}], "lines.0.sku"),
        ([{"productId": "garbage"}], "lines.0.productId"),
        ([{"productId": customer}], "lines.0.productId"),
        ([{"quantity": 1}], "lines.0.productId"),
        ([{"productId": beans["id"], "sku": "US-1"}], "lines.0.sku"),
        ([{"sku": "OLD-1"}], "lines.0.productId"),
        ([{"sku": "US-1"}], "lines.0.unitPrice"),
        ([{"sku": "BEANS-1", "quantity": "0"}], "lines.0.quantity"),
        ([{"sku": "BEANS-1", "quantity": "1.0001"}], "lines.0.quantity"),
        ([{"sku": "BEANS-1", "unitPrice": "-2"}], "lines.0.unitPrice"),
    ]
    async with sessionmaker() as session:
        before = await session.scalar(
            select(func.count()).select_from(Order).where(Order.workspace_id == workspace.id)
        )
    for lines, field in cases:
        payload = (
            await agent(
                CREATE_ORDER, {"i": {"customerId": customer, "currency": "EUR", "lines": lines}}
            )
        ).ok()["createOrder"]
        assert payload["order"] is None, (lines, payload)
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", field)], (
            lines,
            payload,
        )
    both = (
        await agent(
            CREATE_ORDER,
            {
                "i": {
                    "customerId": customer,
                    "currency": "EUR",
                    "lines": [{"sku": "BEANS-1"}],
                    "items": [],
                }
            },
        )
    ).ok()["createOrder"]
    assert both["errors"][0]["field"] == "lines"
    without = (await agent(CREATE_ORDER, {"i": {"customerId": customer, "currency": "EUR"}})).ok()[
        "createOrder"
    ]
    assert [(e["code"], e["field"]) for e in without["errors"]] == [("VALIDATION", "amount")]
    async with sessionmaker() as session:
        after = await session.scalar(
            select(func.count()).select_from(Order).where(Order.workspace_id == workspace.id)
        )
        lines_left = await session.scalar(
            select(func.count())
            .select_from(OrderLine)
            .where(OrderLine.workspace_id == workspace.id)
        )
    assert after == before and lines_left == 0


async def test_items_become_lines_linked_by_sku(as_role: dict[Role, support.GraphQLClient]) -> None:
    agent = as_role[Role.AGENT]
    beans = await make_product(agent, sku="BEANS-1")
    customer = await create_customer(agent)
    items = [
        {"sku": "beans-1", "name": "Beans (old name)", "quantity": 2, "unitPrice": "11.00"},
        {"sku": "GONE-9", "name": "Discontinued", "quantity": "3"},
        {"name": "Gift wrap"},
    ]
    payload = (
        await agent(
            CREATE_ORDER,
            {"i": {"customerId": customer, "amount": "30", "currency": "EUR", "items": items}},
        )
    ).ok()["createOrder"]
    assert payload["errors"] == []
    lines = payload["order"]["lines"]
    assert [(x["sku"], x["name"], x["quantity"], x["unitPrice"], x["product"]) for x in lines] == [
        ("beans-1", "Beans (old name)", "2.000", "11.00", {"id": beans["id"], "sku": "BEANS-1"}),
        ("GONE-9", "Discontinued", "3.000", None, None),
        (None, "Gift wrap", "1.000", None, None),
    ]
    # Adding the discontinued product to the catalogue links the free line.
    gone = await make_product(agent, sku="gone-9", name="Back again")
    read = (
        await agent(
            "query($id: ID!) { node(id: $id) { ... on Order { lines { product { id } } } } }",
            {"id": payload["order"]["id"]},
        )
    ).ok()
    assert [x["product"] for x in read["node"]["lines"]] == [
        {"id": beans["id"]},
        {"id": gone["id"]},
        None,
    ]


def expected_lines(
    items: list[Any], catalogue: dict[str, uuid.UUID], names: dict[uuid.UUID, str]
) -> list[tuple[int, uuid.UUID | None, str | None, str | None, Decimal, Decimal | None]]:
    """What the backfill must make of an order's items, computed here in Python."""
    found = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        raw_sku = item.get("sku")
        sku = raw_sku.strip() if isinstance(raw_sku, str) and raw_sku.strip() else None
        product = catalogue.get(sku.lower()) if sku else None
        raw_name = item.get("name")
        name = raw_name.strip() if isinstance(raw_name, str) and raw_name.strip() else None
        if name is None and product is not None:
            name = names[product]
        quantity = Decimal(1)
        raw_quantity = item.get("quantity")
        if isinstance(raw_quantity, int | float | str) and not isinstance(raw_quantity, bool):
            try:
                value = Decimal(str(raw_quantity).strip())
                if value > 0 and value == value.quantize(Decimal("0.001")):
                    quantity = value
            except ArithmeticError:
                pass
        price = None
        raw_price = item.get("unitPrice")
        if isinstance(raw_price, int | float | str) and not isinstance(raw_price, bool):
            try:
                value = Decimal(str(raw_price).strip())
                if value >= 0:
                    price = value.quantize(Decimal("0.01"))
            except ArithmeticError:
                pass
        found.append((position, product, sku, name, quantity, price))
    return found


async def test_backfill_links_items_by_sku_case_insensitively_and_keeps_free_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        mine = await auth.create_workspace(session, name=f"Backfill {uuid.uuid4().hex[:8]}")
        other = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        catalogue, original = {}, {}
        for sku in ("Beans-1", "MUG-2"):
            product = Product(workspace_id=mine.id, sku=sku, name=sku, price=5, currency="EUR")
            session.add(product)
            await session.flush()
            catalogue[sku.lower()] = product.id
            original[sku] = product.id
        # Same SKU in another workspace: never linked to this one's lines.
        session.add(Product(workspace_id=other.id, sku="TEA-3", name="T", price=1, currency="EUR"))
        customer = Customer(workspace_id=mine.id, name="Ada")
        session.add(customer)
        await session.flush()
        itemsets: list[Any] = [
            [{"sku": "beans-1", "name": "Beans", "quantity": 2, "unitPrice": "4.5"}],
            [{"sku": " MUG-2 ", "quantity": "3"}, {"sku": "tea-3", "quantity": -1}],
            [{"sku": "BEANS-1", "quantity": "lots", "unitPrice": "free"}, 42, "text"],
            [{"name": "No SKU", "quantity": 1.25, "unitPrice": 7}],
            [],
            {"not": "a list"},
        ]
        orders = []
        for n, items in enumerate(itemsets):
            order = Order(
                workspace_id=mine.id,
                customer_id=customer.id,
                number=f"B-{n}",
                amount=1,
                currency="EUR",
                placed_at=func.now(),
                items=items,
            )
            session.add(order)
            orders.append(order)
        await session.flush()
    async with sessionmaker() as session, session.begin():
        await products.lines_from_items(session, workspace_id=mine.id)
        await products.lines_from_items(session, workspace_id=mine.id)  # idempotent
    async with sessionmaker() as session:
        for order, items in zip(orders, itemsets, strict=True):
            rows = await session.execute(
                select(
                    OrderLine.position,
                    OrderLine.product_id,
                    OrderLine.sku,
                    OrderLine.name,
                    OrderLine.quantity,
                    OrderLine.unit_price,
                )
                .where(OrderLine.order_id == order.id)
                .order_by(OrderLine.position)
            )
            got = [tuple(r) for r in rows.all()]
            names = {pid: sku for sku, pid in original.items()}
            want = expected_lines(items if isinstance(items, list) else [], catalogue, names)
            assert got == want, (items, got, want)
