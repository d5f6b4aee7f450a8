"""The citizen search, measured: `python -m bench.citizens --citizens 5000000 --database postgresql`.

1. a database (a fresh SQLite file, or a fresh PostgreSQL schema; `--schema NAME` keeps one between runs, and a
   schema that holds the citizens already is searched as it is), brought to the newest revision, posts loaded;
2. N generated citizens (bench/citizen_names.py) and the words of their names (registry/citizen_search.py
   `index_rows`) written in bulk: COPY on PostgreSQL, with the secondary indexes built after the rows, then
   VACUUM ANALYZE; multi-row inserts on SQLite;
3. `hub serve` on that database, an administrator's token and a consular agent's for each of three posts;
4. rounds of searches through GET /api/v1/citizens, each round one search of each kind (below) for a citizen
   drawn at random (the generator gives any citizen again from its number), timed from one keep-alive client;
   every answer is checked (the citizen searched for is in it, or the page is not empty);
5. p50 / p95 / max per kind and over all, as a table and as JSON (var/bench-citizens.json or --output).

Kinds: an Arabic name typed with other alef forms and ta marbuta as ha; a Latin name in capitals, family name
first; a CNIE; a birth date with a family name; an agent's search of a Latin name at their post; the second page
of an agent's search of a family name (by cursor); a three-letter prefix of a family name with a given name.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

from bench import citizen_names
from bench.procs import Process, free_port

PROJECT = Path(__file__).resolve().parent.parent
HUB_COMMAND = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
AGENT_POSTS = 3
ALEF_SWAP = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ا": "أ", "ة": "ه", "ى": "ي"})
COLUMNS = ["id", "registration_id", "given_name_latin", "family_name_latin", "given_name_arabic",
           "family_name_arabic", "birth_date", "birth_place", "sex", "cnie", "passport_number", "country", "city",
           "address_lines", "phone", "email", "post_code", "registered_at", "status"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.citizens", description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", "-n", type=int, default=2000, help="citizens stored (default %(default)s)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("HUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--schema", default=None, help="PostgreSQL: this schema, kept afterwards; citizens already "
                                                      "there are searched as they are (a later run skips the load)")
    parser.add_argument("--rounds", type=int, default=100, help="rounds of searches, one of each kind (default "
                                                                "%(default)s)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--work", type=Path, default=None, help="the run's files (default var/bench-citizens)")
    parser.add_argument("--output", "-o", type=Path, default=None, help="JSON report (default "
                                                                        "var/bench-citizens.json)")
    return parser


# -- the database ----------------------------------------------------------------------------------------------

def _postgres_schema(url: str, schema: str | None) -> tuple[str, str, bool]:
    """(database url with the schema as search_path, schema, made here)."""
    import psycopg
    name = schema or f"bench_citizens_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        made = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is None
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{name}", name, made


def prepare(database_url: str) -> list[tuple[str, str, str]]:
    """Migrate, load the posts; returns the posts (code, country, city), consulates first."""
    from sqlalchemy import select

    from hub.store.db import make_engine, migrate
    from registry.models import Post
    from registry.reference import load_posts
    from sqlalchemy.orm import Session

    engine = make_engine(database_url)
    try:
        migrate(engine)
        with Session(engine) as session, session.begin():
            load_posts(session, PROJECT / "config" / "reference" / "posts.csv")
        with Session(engine) as session:
            return [(p.code, p.country, p.city) for p in
                    session.scalars(select(Post).order_by(Post.kind, Post.code))]
    finally:
        engine.dispose()


def stored(database_url: str) -> int:
    from sqlalchemy import func, select

    from hub.store.db import make_engine
    from registry.models import Citizen
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Citizen)).scalar_one()
    finally:
        engine.dispose()


def load(database_url: str, count: int, posts, say) -> float:
    """Write `count` generated citizens and their name words; returns the seconds it took."""
    started = time.perf_counter()
    if database_url.startswith("postgresql"):
        _copy(database_url, count, posts, say)
    else:
        _insert(database_url, count, posts)
    return time.perf_counter() - started


def _rows(start: int, stop: int, posts):
    from registry.citizen_search import index_rows

    class Row:  # what index_rows reads of a citizen
        __slots__ = ("id", "post_code", "given_name_latin", "family_name_latin", "given_name_arabic",
                     "family_name_arabic")

    for i in range(start, stop):
        c = citizen_names.citizen(i, posts)
        row = Row()
        for name in Row.__slots__:
            setattr(row, name, c[name])
        yield c, index_rows(row)


def _insert(database_url: str, count: int, posts) -> None:
    import datetime as dt

    from sqlalchemy import insert

    from hub.store.db import make_engine
    from registry.models import Citizen, CitizenNameToken
    now = dt.datetime.now(dt.timezone.utc)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for start in range(0, count, 5000):
                citizens, words = [], []
                for c, rows in _rows(start, min(count, start + 5000), posts):
                    citizens.append({**c, "registered_at": now})
                    words.extend(rows)
                conn.execute(insert(Citizen.__table__), citizens)
                conn.execute(insert(CitizenNameToken.__table__), words)
    finally:
        engine.dispose()


def _copy(database_url: str, count: int, posts, say) -> None:
    """COPY in text format, the secondary indexes dropped during the load and built after it (one sorted build
    each instead of millions of random inserts)."""
    import datetime as dt

    import psycopg
    from sqlalchemy.schema import CreateIndex

    from hub.store.db import normalise_url
    from registry.models import Citizen, CitizenNameToken
    from sqlalchemy.dialects import postgresql

    url, _, options = database_url.partition("?options=-csearch_path%3D")
    schema = options.split("&")[0]
    indexes = [*Citizen.__table__.indexes, *CitizenNameToken.__table__.indexes]
    now = dt.datetime.now(dt.timezone.utc).isoformat()

    def text(value) -> str:
        if value is None:
            return "\\N"
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    with psycopg.connect(normalise_url(url).replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute("SET maintenance_work_mem = '1GB'")
        for index in indexes:
            conn.execute(f'DROP INDEX IF EXISTS "{index.name}"')
        batch = 200_000
        for start in range(0, count, batch):
            citizens, words = io.StringIO(), io.StringIO()
            for c, rows in _rows(start, min(count, start + batch), posts):
                citizens.write("\t".join(text(now if k == "registered_at" else c[k]) for k in COLUMNS) + "\n")
                for r in rows:
                    words.write(f"{r['citizen_id']}\t{text(r['token'])}\t{r['post_code']}\n")
            with conn.cursor() as cur:
                with cur.copy(f"COPY citizens ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    copy.write(citizens.getvalue())
                with cur.copy("COPY citizen_name_tokens (citizen_id, token, post_code) FROM STDIN") as copy:
                    copy.write(words.getvalue())
            say(f"  {min(count, start + batch)} citizens written")
        for index in indexes:
            say(f"  building {index.name}")
            conn.execute(str(CreateIndex(index).compile(dialect=postgresql.dialect())))
        conn.execute("SELECT setval(pg_get_serial_sequence('citizens', 'id'), (SELECT max(id) FROM citizens))")
        say("  VACUUM ANALYZE")  # statistics, and the visibility map that lets index-only scans skip the table
        conn.execute("VACUUM (ANALYZE) citizens")
        conn.execute("VACUUM (ANALYZE) citizen_name_tokens")


# -- the searches ----------------------------------------------------------------------------------------------

def kinds(rng: random.Random, count: int, posts, agent_posts: list[str]) -> dict:
    """One search of each kind: name -> (token key, query parameters, registration id expected or None)."""
    def anyone():
        return citizen_names.citizen(rng.randrange(count), posts)

    def at_post(code: str):
        for _ in range(10_000):  # citizens of the agents' posts are common: they are the busiest posts
            c = anyone()
            if c["post_code"] == code:
                return c
        raise RuntimeError(f"no generated citizen at {code}")

    a, b, c, d = anyone(), anyone(), anyone(), anyone()
    agent = rng.choice(agent_posts)
    e, f = at_post(agent), at_post(agent)
    g = anyone()
    arabic = f"{a['given_name_arabic']} {a['family_name_arabic']}".translate(ALEF_SWAP)
    return {
        "arabic name, other alef forms": ("admin", {"q": arabic}, None),
        "Latin name reversed, capitals": ("admin", {"q": f"{b['family_name_latin']} {b['given_name_latin']}".upper()},
                                          None),
        "CNIE": ("admin", {"q": c["cnie"]}, c["registration_id"]),
        "birth date + family name": ("admin", {"q": d["family_name_latin"], "birth_date": d["birth_date"].isoformat()},
                                     d["registration_id"]),
        "agent: name at their post": (agent, {"q": f"{e['given_name_latin']} {e['family_name_latin']}"}, None),
        "agent: second page": (agent, {"q": f['family_name_latin'], "page": 2}, None),
        "prefix + given name": ("admin", {"q": f"{g['family_name_latin'].split()[-1][:3]} {g['given_name_latin']}"},
                                None),
    }


def run_searches(hub_url: str, tokens: dict[str, str], count: int, posts, rounds: int, seed: int, say) -> dict:
    rng = random.Random(seed)
    clients = {key: httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
               for key, token in tokens.items()}
    agent_posts = [key for key in tokens if key != "admin"]
    latencies: dict[str, list[float]] = {}
    found: dict[str, list[int]] = {}
    try:
        for round_ in range(rounds):
            for name, (who, params, expected) in kinds(rng, count, posts, agent_posts).items():
                client, params = clients[who], dict(params)
                if params.pop("page", 1) == 2:
                    first = client.get("/api/v1/citizens", params=params)
                    first.raise_for_status()
                    params["cursor"] = first.json()["next_cursor"]
                    if params["cursor"] is None:
                        continue  # one page only: no second page to time
                started = time.perf_counter()
                response = client.get("/api/v1/citizens", params=params)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{name} {params}: HTTP {response.status_code}: {response.text[:300]}")
                page = response.json()["citizens"]
                if not page:
                    raise RuntimeError(f"{name} {params}: nobody found")
                if expected and expected not in {c["registration_id"] for c in page}:
                    raise RuntimeError(f"{name} {params}: {expected} not in the first page")
                if who != "admin" and any(c["post_code"] != who for c in page):
                    raise RuntimeError(f"{name} {params}: an agent of {who} was given another post's citizen")
                latencies.setdefault(name, []).append(elapsed)
                found.setdefault(name, []).append(len(page))
            if (round_ + 1) % 20 == 0:
                say(f"  {round_ + 1} rounds")
    finally:
        for client in clients.values():
            client.close()
    return {"latencies": latencies, "found": found}


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest rank
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1e3, 2)
    return {"requests": len(ordered), "p50_ms": at(0.5), "p95_ms": at(0.95), "max_ms": round(ordered[-1] * 1e3, 2)}


def _tokens(database_url: str, agent_posts: list[str]) -> dict[str, str]:
    """An administrator's token ("admin") and a consular agent's for each of `agent_posts`, valid a day."""
    from hub.access.tokens import create_token
    from hub.store.db import make_engine, make_sessionmaker
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            made = {"admin": create_token(session, role="administrator", name="bench citizens", created_by="bench",
                                          expires_in_days=1)[1]}
            for code in agent_posts:
                made[code] = create_token(session, role="consular_agent", name=f"bench citizens {code}",
                                          created_by="bench", post_code=code, expires_in_days=1)[1]
        return made
    finally:
        engine.dispose()


def run(*, citizens: int, database: str = "sqlite", postgres_url: str = DEFAULT_POSTGRES_URL,
        schema: str | None = None, rounds: int = 100, seed: int = 14, work: Path | None = None,
        quiet: bool = False) -> dict:
    from hub.trust import pki

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    work = Path(work or PROJECT / "var" / "bench-citizens")
    work.mkdir(parents=True, exist_ok=True)
    made_schema = None
    if database == "postgresql":
        database_url, schema_name, made = _postgres_schema(postgres_url, schema)
        made_schema = schema_name if made and schema is None else None
    else:
        database_url = f"sqlite:///{work / 'citizens.sqlite'}"
        (work / "citizens.sqlite").unlink(missing_ok=True)
    processes: list[Process] = []
    try:
        posts = prepare(database_url)
        already = stored(database_url)
        if already not in (0, citizens):
            raise RuntimeError(f"the database holds {already} citizens, not {citizens}: use another schema")
        load_seconds = None
        if already == 0:
            say(f"loading {citizens} citizens ({database})")
            load_seconds = round(load(database_url, citizens, posts, say), 1)
            say(f"  loaded in {load_seconds} s")
        pki_dir = work / "pki"
        pki.init_dev_keys(pki_dir, ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"])
        port = free_port()
        env = {**os.environ, "HUB_VAR_DIR": str(work / "var"), "HUB_PKI_DIR": str(pki_dir),
               "HUB_DATABASE_URL": database_url, "HUB_CDG_SFTP_PORT": str(free_port())}
        hub = Process("hub", HUB_COMMAND + ["serve", "--port", str(port)], env=env, log_path=work / "hub.log",
                      health_url=f"http://127.0.0.1:{port}/healthz")
        processes.append(hub)
        hub.wait_healthy(120)
        agent_posts = [code for code, *_ in posts[:AGENT_POSTS]]
        tokens = _tokens(database_url, agent_posts)
        say(f"searching: {rounds} rounds")
        measured = run_searches(f"http://127.0.0.1:{port}", tokens, citizens, posts, rounds, seed, say)
    finally:
        for process in reversed(processes):
            process.stop()
        if made_schema:
            import psycopg
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{made_schema}" CASCADE')
    every = [x for values in measured["latencies"].values() for x in values]
    return {"citizens": citizens, "database": database, "load_seconds": load_seconds, "rounds": rounds,
            "all": percentiles(every),
            "kinds": {name: {**percentiles(values), "found_median": statistics.median(measured["found"][name])}
                      for name, values in measured["latencies"].items()}}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(citizens=args.citizens, database=args.database, postgres_url=args.postgres_url, schema=args.schema,
                 rounds=args.rounds, seed=args.seed, work=args.work)
    output = args.output or PROJECT / "var" / "bench-citizens.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"\n{report['citizens']} citizens on {report['database']}"
          + (f" (loaded in {report['load_seconds']} s)" if report["load_seconds"] else ""))
    print(f"{'search':34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'found':>6}")
    for name, figures in {**report["kinds"], "all": {**report["all"], "found_median": ""}}.items():
        print(f"{name:34} {figures['requests']:>5} {figures['p50_ms']:>8} {figures['p95_ms']:>8} "
              f"{figures['max_ms']:>8} {figures['found_median']:>6}")
    print(f"report written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
