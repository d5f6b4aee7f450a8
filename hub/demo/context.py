"""What every demo scenario receives: the hub's API, the registered citizens, the sandboxes' addresses."""
from __future__ import annotations

from dataclasses import dataclass, field

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

    def sandbox_url(self, partner: str) -> str:
        return self.sandbox_urls[partner]

    def opened(self, service: str, reference: str) -> None:
        self.references.setdefault(service, []).append(reference)


def register_citizens(api: httpx.Client, ctx: DemoContext, count: int, on_each=lambda: None) -> None:
    """Register `count` citizens across the demo's posts. CNIEs end in 0-6 (DGSN knows them)."""
    for i in range(count):
        given, family, given_ar, family_ar, sex = PEOPLE[i % len(PEOPLE)]
        post = ctx.posts[i % len(ctx.posts)]
        citizen = api.post("/api/v1/citizens", json={
            "post_code": post, "given_name_latin": given, "family_name_latin": family,
            "given_name_arabic": given_ar, "family_name_arabic": family_ar,
            "birth_date": f"{1950 + i % 45}-{1 + i % 12:02d}-{1 + i % 28:02d}", "sex": sex,
            "cnie": f"{'BK' if i % 2 else 'J'}{100000 + i * 10 + i % 7:06d}", "country": post[:2],
            "city": "—"}).raise_for_status().json()
        ctx.citizens.append(citizen)
        on_each()
