"""What every demo scenario receives: the hub's API, the registered citizens, the sandboxes' addresses.

The demo acts as the people who would: each post's consular agent registers its citizens, opens their
cases and records what the post does (`ctx.agent(post)`, a client with that post's token); integration
staff send the life-certificate batch and poll CDG (`ctx.staff`); the `api` the scenarios are given is a
supervisor's, which reads every case (lists masked) and the messages."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import httpx

# (given Latin, family Latin, given Arabic, family Arabic, sex)
PEOPLE = [
    ("Youssef", "El Amrani", "يوسف", "العمراني", "M"), ("Fatima Zahra", "Benali", "فاطمة الزهراء", "بنعلي", "F"),
    ("Mohamed", "Ouazzani", "محمد", "الوزاني", "M"), ("Khadija", "Alaoui", "خديجة", "العلوي", "F"),
    ("Rachid", "Bennani", "رشيد", "بناني", "M"), ("Salma", "Tazi", "سلمى", "التازي", "F"),
    ("Hamza", "Chraibi", "حمزة", "الشرايبي", "M"), ("Imane", "Berrada", "إيمان", "برادة", "F"),
    ("Omar", "Idrissi", "عمر", "الإدريسي", "M"), ("Nadia", "Fassi Fihri", "نادية", "الفاسي الفهري", "F"),
    ("Karim", "Lahlou", "كريم", "لحلو", "M"), ("Samira", "Ait Ouahmane", "سميرة", "آيت واحمان", "F"),
]
POSTS = ["FR-PARIS", "ES-MADRID", "IT-MILANO", "BE-BRUX", "NL-AMSTER", "DE-DUSSEL", "FR-LYON", "ES-BARCEL"]


@dataclass
class DemoContext:
    hub_url: str
    sandbox_urls: dict[str, str]             # partner code -> its HTTP (control) base URL
    posts: list[str]
    citizens: list[dict] = field(default_factory=list)   # as GET /api/v1/citizens/{id} returns them
    references: dict[str, list[str]] = field(default_factory=dict)  # service -> case references opened
    agents: dict[str, httpx.Client] = field(default_factory=dict)   # post -> its consular agent's client
    staff: httpx.Client | None = None                               # integration staff's client
    new_client: Callable[[str, str | None], httpx.Client] | None = None  # (role, post) -> a client

    def sandbox_url(self, partner: str) -> str:
        return self.sandbox_urls[partner]

    def agent(self, post: str) -> httpx.Client:
        """The consular agent of `post` (a token bound to that post, made on first use)."""
        if post not in self.agents:
            self.agents[post] = self.new_client("consular_agent", post)
        return self.agents[post]

    def opened(self, service: str, reference: str) -> None:
        self.references.setdefault(service, []).append(reference)


def register_citizens(api: httpx.Client, ctx: DemoContext, count: int, on_each=lambda: None,
                      timeout: float = 120) -> None:
    """Register `count` citizens across the demo's posts, then wait for DGSN's identity check to make each
    ACTIVE (POST /api/v1/citizens opens their registration case). CNIEs end in 0-6 (DGSN knows them)."""
    pending = []
    for i in range(count):
        given, family, given_ar, family_ar, sex = PEOPLE[i % len(PEOPLE)]
        post = ctx.posts[i % len(ctx.posts)]
        citizen = ctx.agent(post).post("/api/v1/citizens", json={
            "post_code": post, "given_name_latin": given, "family_name_latin": family,
            "given_name_arabic": given_ar, "family_name_arabic": family_ar,
            "birth_date": f"{1950 + i % 45}-{1 + i % 12:02d}-{1 + i % 28:02d}", "sex": sex,
            "cnie": f"{'BK' if i % 2 else 'J'}{100000 + i * 10 + i % 7:06d}", "country": post[:2],
            "city": "—", "address_lines": f"{1 + i} rue de la République"}).raise_for_status().json()
        pending.append(citizen["registration_id"])
    deadline = time.monotonic() + timeout
    for registration_id in pending:
        while True:
            citizen = api.get(f"/api/v1/citizens/{registration_id}").raise_for_status().json()
            if citizen["status"] != "PENDING":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{registration_id} still waits for DGSN's identity check after {timeout:.0f} s")
            time.sleep(0.2)
        ctx.citizens.append(citizen)
        on_each()
