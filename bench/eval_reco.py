"""Offline evaluation of recommendations and churn risk (issue 13, point 6; decision 0016).

Both run through the real service functions on a real database, on generated data whose
structure is known:

- **Recommendations**: customers have latent tastes (a main and sometimes a second product
  category; categories differ in popularity), so their purchases are structured. Each
  customer's last order is hidden; recommendations are computed from the rest
  (``recommendations_for``) and a hit is a top-5 list containing a product of the hidden
  order that the customer had not bought before. The baseline recommends the five most
  popular products (by distinct buyers) the customer has not bought.
- **Churn**: customers order at their own rhythm (a usual interval from 4 to 120 days,
  each gap varying +-50 %); some stop ordering (churn), some fade (a smaller last order).
  ``churn_risks`` as of the evaluation date is compared with recency alone (days since
  the last order) by ROC AUC, churned = positive.

Run on a larger set (writes ``docs/decisions/0016-results.json``):

    .venv/bin/python -m bench.eval_reco --database-url postgresql://postgres@127.0.0.1:5432/postgres

The database must be migrated (``crm-graphql migrate``); the script adds two workspaces
named ``Evaluation ...`` and, unless ``--keep``, deletes them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Customer, Order, OrderLine, OrderStatus, Product, Role, Workspace
from crm_graphql.services import auth
from crm_graphql.services.actor import Actor
from crm_graphql.services.recommendations import churn_risks, recommendations_for

AS_OF = datetime(2026, 6, 1, 12, tzinfo=UTC)
TOP_K = 5
CATEGORIES = 8
PRODUCTS_PER_CATEGORY = 6
BATCH = 100
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "decisions" / "0016-results.json"


@dataclass(frozen=True)
class RecommendationResult:
    customers: int
    evaluated: int  # customers whose hidden order holds a product new to them
    hit_rate: float  # recommendations, hit rate at 5
    popular_hit_rate: float  # most-popular baseline, hit rate at 5


@dataclass(frozen=True)
class ChurnResult:
    customers: int
    churned: int
    auc: float  # churnRisk.score
    recency_auc: float  # days since the last order alone


class Ids:
    """IDs whose order is the seed's (the low 64 bits come from it, so ties broken by id
    fall the same way every run) and that are new in every run (the high 64 bits do
    not), so runs can share a database."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.run = uuid.uuid4().int >> 64

    def __call__(self) -> uuid.UUID:
        return uuid.UUID(int=(self.run << 64) | self.rng.getrandbits(64))


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties: half)."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


# ------------------------------------------------------------------------ the worlds


@dataclass
class Purchases:
    products: list[dict[str, Any]]
    orders: dict[uuid.UUID, list[list[uuid.UUID]]]  # customer -> orders (in time) of products


def purchase_world(rng: random.Random, customers: int) -> Purchases:
    """Customers with latent tastes buying from categories of unequal popularity."""
    new_id = Ids(rng)
    category_weights = [1 / (c + 1) ** 0.7 for c in range(CATEGORIES)]
    catalogue: list[list[uuid.UUID]] = []
    products: list[dict[str, Any]] = []
    for c in range(CATEGORIES):
        ids = []
        for p in range(PRODUCTS_PER_CATEGORY):
            pid = new_id()
            ids.append(pid)
            products.append(
                {
                    "id": pid,
                    "sku": f"C{c}-P{p}",
                    "name": f"Product {p} of category {c}",
                    "category": f"Category {c}",
                    "price": Decimal(rng.randint(5, 200)),
                    "currency": "EUR",
                    "version": 1,
                }
            )
        catalogue.append(ids)
    within = [1 / (p + 1) for p in range(PRODUCTS_PER_CATEGORY)]
    everything = [pid for ids in catalogue for pid in ids]
    overall = [category_weights[c] * within[p] for c in range(CATEGORIES) for p in range(PRODUCTS_PER_CATEGORY)]  # fmt: skip

    orders: dict[uuid.UUID, list[list[uuid.UUID]]] = {}
    for _ in range(customers):
        main = rng.choices(range(CATEGORIES), weights=category_weights)[0]
        second = main
        if rng.random() < 0.6:
            second = rng.choices(range(CATEGORIES), weights=category_weights)[0]
        history = []
        for _ in range(rng.randint(3, 7)):
            basket: list[uuid.UUID] = []
            for _ in range(rng.choice((1, 2, 2, 3))):
                roll = rng.random()
                if roll < 0.7:
                    pid = rng.choices(catalogue[main], weights=within)[0]
                elif roll < 0.9:
                    pid = rng.choices(catalogue[second], weights=within)[0]
                else:
                    pid = rng.choices(everything, weights=overall)[0]
                if pid not in basket:
                    basket.append(pid)
            history.append(basket)
        orders[new_id()] = history
    return Purchases(products, orders)


@dataclass
class Rhythm:
    customer_id: uuid.UUID
    churned: bool
    placed: list[datetime]  # oldest first
    amounts: list[Decimal]


def order_histories(rng: random.Random, customers: int) -> list[Rhythm]:
    """Customers ordering at their own usual interval; about 40 % stop (churn)."""
    new_id = Ids(rng)
    found = []
    for _ in range(customers):
        usual = math.exp(rng.uniform(math.log(4), math.log(120)))  # days
        churned = rng.random() < 0.4
        # Some churners left recently, some loyal customers are late: the ranges overlap.
        silence = usual * (rng.uniform(0.8, 4.0) if churned else rng.uniform(0.0, 1.6))
        moments = [AS_OF - timedelta(days=silence)]
        for _ in range(rng.randint(2, 8)):
            moments.append(moments[-1] - timedelta(days=usual * rng.uniform(0.5, 1.5)))
        moments.reverse()
        base = rng.uniform(20, 500)
        amounts = [Decimal(f"{base * rng.uniform(0.8, 1.2):.2f}") for _ in moments]
        if churned and rng.random() < 0.5:  # fading before leaving
            amounts[-1] = Decimal(f"{base * rng.uniform(0.3, 0.7):.2f}")
        found.append(Rhythm(new_id(), churned, moments, amounts))
    return found


# ------------------------------------------------------------------- into the database


async def _workspace(session: AsyncSession, label: str) -> Actor:
    workspace = await auth.create_workspace(
        session, name=f"Evaluation {label} {uuid.uuid4().hex[:8]}"
    )
    return Actor(workspace_id=workspace.id, role=Role.ADMIN)


def _customer(actor: Actor, cid: uuid.UUID, n: int) -> dict[str, Any]:
    return {"id": cid, "workspace_id": actor.workspace_id, "name": f"Customer {n}"}


def _order(
    actor: Actor, oid: uuid.UUID, cid: uuid.UUID, n: int, placed: datetime, amount: Decimal
) -> dict[str, Any]:
    return {
        "id": oid,
        "workspace_id": actor.workspace_id,
        "customer_id": cid,
        "number": f"EV-{n:07d}",
        "status": OrderStatus.PAID,
        "amount": amount,
        "currency": "EUR",
        "placed_at": placed,
        "items": [],
        "version": 1,
    }


async def _load_purchases(
    session: AsyncSession, actor: Actor, world: Purchases, rng: random.Random
) -> None:
    prices = {p["id"]: p["price"] for p in world.products}
    new_id = Ids(rng)
    await session.execute(
        insert(Product), [{**p, "workspace_id": actor.workspace_id} for p in world.products]
    )
    customers, orders, lines = [], [], []
    for n, (cid, history) in enumerate(world.orders.items()):
        customers.append(_customer(actor, cid, n))
        placed = AS_OF - timedelta(days=400)
        for basket in history[:-1]:  # the last order is hidden
            placed += timedelta(days=rng.randint(5, 40))
            oid = new_id()
            amount = sum((prices[p] for p in basket), Decimal(0))
            orders.append(_order(actor, oid, cid, len(orders), placed, amount))
            for position, pid in enumerate(basket):
                lines.append(
                    {
                        "id": new_id(),
                        "workspace_id": actor.workspace_id,
                        "order_id": oid,
                        "position": position,
                        "product_id": pid,
                        "sku": None,
                        "name": None,
                        "quantity": Decimal(1),
                        "unit_price": prices[pid],
                        "currency": "EUR",
                    }
                )
    for table, rows in ((Customer, customers), (Order, orders), (OrderLine, lines)):
        await session.execute(insert(table), rows)


async def _load_rhythms(session: AsyncSession, actor: Actor, world: list[Rhythm]) -> None:
    customers, orders = [], []
    for n, rhythm in enumerate(world):
        customers.append(_customer(actor, rhythm.customer_id, n))
        for placed, amount in zip(rhythm.placed, rhythm.amounts, strict=True):
            orders.append(
                _order(actor, uuid.uuid4(), rhythm.customer_id, len(orders), placed, amount)
            )
    await session.execute(insert(Customer), customers)
    await session.execute(insert(Order), orders)


# ------------------------------------------------------------------------ evaluations


def popular_baseline(world: Purchases) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The five most popular products (distinct buyers, visible history only) each
    customer has not bought; ties by product id, as the service breaks them."""
    owned = {cid: {p for basket in h[:-1] for p in basket} for cid, h in world.orders.items()}
    buyers = Counter(p for products in owned.values() for p in products)
    ranking = sorted(buyers, key=lambda p: (-buyers[p], p))
    return {cid: [p for p in ranking if p not in mine][:TOP_K] for cid, mine in owned.items()}


async def evaluate_recommendations(
    sessionmaker: async_sessionmaker[AsyncSession], *, customers: int, seed: int, keep: bool
) -> RecommendationResult:
    rng = random.Random(seed)
    world = purchase_world(rng, customers)
    async with sessionmaker() as session, session.begin():
        actor = await _workspace(session, "recommendations")
        await _load_purchases(session, actor, world, rng)
    await _analyze(sessionmaker)
    try:
        found: dict[uuid.UUID, list[uuid.UUID]] = {}
        ids = list(world.orders)
        async with sessionmaker() as session:
            for start in range(0, len(ids), BATCH):
                page = await recommendations_for(actor, session, ids[start : start + BATCH], TOP_K)
                found.update({cid: [r.product.id for r in recs] for cid, recs in page.items()})
        baseline = popular_baseline(world)
        evaluated = hits = popular_hits = 0
        for cid, history in world.orders.items():
            seen = {p for basket in history[:-1] for p in basket}
            new = set(history[-1]) - seen
            if not new:
                continue
            evaluated += 1
            hits += bool(new & set(found.get(cid, [])))
            popular_hits += bool(new & set(baseline[cid]))
        return RecommendationResult(
            customers, evaluated, hits / evaluated, popular_hits / evaluated
        )
    finally:
        if not keep:
            await _drop(sessionmaker, actor)


async def evaluate_churn(
    sessionmaker: async_sessionmaker[AsyncSession], *, customers: int, seed: int, keep: bool
) -> ChurnResult:
    rng = random.Random(seed)
    world = order_histories(rng, customers)
    async with sessionmaker() as session, session.begin():
        actor = await _workspace(session, "churn")
        await _load_rhythms(session, actor, world)
    await _analyze(sessionmaker)
    try:
        ids = [r.customer_id for r in world]
        risks: dict[uuid.UUID, Any] = {}
        async with sessionmaker() as session:
            for start in range(0, len(ids), BATCH):
                risks.update(
                    await churn_risks(actor, session, ids[start : start + BATCH], now=AS_OF)
                )
        labels = [r.churned for r in world]
        scores = [risks[r.customer_id].score for r in world]
        recency = [(AS_OF - r.placed[-1]).total_seconds() for r in world]
        return ChurnResult(
            customers, sum(labels), roc_auc(scores, labels), roc_auc(recency, labels)
        )
    finally:
        if not keep:
            await _drop(sessionmaker, actor)


async def _analyze(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Planner statistics for the freshly bulk-loaded tables, as autovacuum would gather
    on a database in use (without them the planner guesses join sizes badly)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(text("ANALYZE customers, orders, order_lines, products"))


async def _drop(sessionmaker: async_sessionmaker[AsyncSession], actor: Actor) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(Workspace).where(Workspace.id == actor.workspace_id))


async def evaluate(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    customers: int = 400,
    seed: int = 13,
    keep: bool = False,
) -> dict[str, Any]:
    """Both evaluations on ``customers`` generated customers each, from ``seed``."""
    reco = await evaluate_recommendations(sessionmaker, customers=customers, seed=seed, keep=keep)
    churn = await evaluate_churn(sessionmaker, customers=customers, seed=seed, keep=keep)
    return {"seed": seed, "recommendations": asdict(reco), "churn": asdict(churn)}


async def _main(args: argparse.Namespace) -> None:
    from crm_graphql.db.engine import make_engine, make_sessionmaker

    engine = make_engine(args.database_url, pool_size=2)
    try:
        sessionmaker = make_sessionmaker(engine)
        runs = []
        for seed in args.seeds:
            started = time.monotonic()
            result = await evaluate(
                sessionmaker, customers=args.customers, seed=seed, keep=args.keep
            )
            result["seconds"] = round(time.monotonic() - started, 1)
            print(json.dumps(result))
            runs.append(result)
    finally:
        await engine.dispose()
    if args.out:
        args.out.write_text(
            json.dumps({"customers": args.customers, "runs": runs}, indent=2) + "\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the evaluation workspaces")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
