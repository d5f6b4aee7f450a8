"""Generated citizens for the citizen search benchmark (bench/citizens.py): Moroccan names in both scripts, drawn
from a skewed distribution so that some names are as common as they are in life ("Mohamed", "Fatima", "Alaoui")
and searching them costs what it costs.

Citizen number i (from 0) is a pure function of i: the benchmark finds any generated citizen again, to search for
it, without reading the database. Family names are a root with a particle or none (none, "El" / ال attached,
"Ben" / بن, "Ait" / آيت), so the index holds the common short words ("el", "ben") that real names hold.
"""
from __future__ import annotations

import bisect
import datetime as dt
import itertools

MALE = [("Mohamed", "محمد"), ("Ahmed", "أحمد"), ("Youssef", "يوسف"), ("Omar", "عمر"), ("Ali", "علي"),
        ("Hassan", "حسن"), ("Abdellah", "عبد الله"), ("Said", "سعيد"), ("Rachid", "رشيد"), ("Mustapha", "مصطفى"),
        ("Khalid", "خالد"), ("Karim", "كريم"), ("Hamza", "حمزة"), ("Ismail", "إسماعيل"), ("Brahim", "إبراهيم"),
        ("Driss", "إدريس"), ("Anas", "أنس"), ("Amine", "أمين"), ("Ayoub", "أيوب"), ("Younes", "يونس"),
        ("Yassine", "ياسين"), ("Mehdi", "مهدي"), ("Nabil", "نبيل"), ("Tarik", "طارق"), ("Adil", "عادل"),
        ("Aziz", "عزيز"), ("Jamal", "جمال"), ("Hicham", "هشام"), ("Noureddine", "نور الدين"), ("Redouane", "رضوان"),
        ("Soufiane", "سفيان"), ("Zakaria", "زكرياء"), ("Bilal", "بلال"), ("Hamid", "حميد"), ("Mourad", "مراد"),
        ("Samir", "سمير"), ("Fouad", "فؤاد"), ("Larbi", "العربي"), ("Lahcen", "لحسن"), ("Mbarek", "مبارك"),
        ("Abdelaziz", "عبد العزيز"), ("Othmane", "عثمان"), ("Badr", "بدر"), ("Ilyas", "إلياس"), ("Walid", "وليد"),
        ("Aymane", "أيمن"), ("Reda", "رضا"), ("Yahya", "يحيى"), ("Moussa", "موسى"), ("Issa", "عيسى"),
        ("Salah", "صلاح"), ("Taoufik", "توفيق"), ("Abdeslam", "عبد السلام"), ("Hafid", "حفيظ"), ("Jawad", "جواد"),
        ("Abderrahim", "عبد الرحيم"), ("Abdelkader", "عبد القادر"), ("Hussein", "حسين"), ("Mounir", "منير"),
        ("Azzeddine", "عز الدين")]
FEMALE = [("Fatima", "فاطمة"), ("Khadija", "خديجة"), ("Aicha", "عائشة"), ("Meryem", "مريم"), ("Zineb", "زينب"),
          ("Naima", "نعيمة"), ("Latifa", "لطيفة"), ("Malika", "مليكة"), ("Saida", "سعيدة"), ("Rachida", "رشيدة"),
          ("Hafsa", "حفصة"), ("Salma", "سلمى"), ("Imane", "إيمان"), ("Asmae", "أسماء"), ("Hanane", "حنان"),
          ("Nadia", "نادية"), ("Samira", "سميرة"), ("Karima", "كريمة"), ("Souad", "سعاد"), ("Loubna", "لبنى"),
          ("Ghizlane", "غزلان"), ("Siham", "سهام"), ("Houda", "هدى"), ("Kawtar", "كوثر"), ("Sanae", "سناء"),
          ("Wafae", "وفاء"), ("Hind", "هند"), ("Btissam", "ابتسام"), ("Ikram", "إكرام"), ("Nora", "نورة"),
          ("Amal", "أمل"), ("Hayat", "حياة"), ("Jamila", "جميلة"), ("Najat", "نجاة"), ("Rabia", "رابعة"),
          ("Zahra", "زهرة"), ("Fatima Zahra", "فاطمة الزهراء"), ("Ilham", "إلهام"), ("Chaima", "شيماء"),
          ("Oumaima", "أميمة"), ("Yasmine", "ياسمين"), ("Sara", "سارة"), ("Nisrine", "نسرين"), ("Soukaina", "سكينة"),
          ("Amina", "أمينة"), ("Mouna", "منى"), ("Hajar", "هاجر"), ("Laila", "ليلى"), ("Rajae", "رجاء"),
          ("Bouchra", "بشرى"), ("Hélène", "هيلين"), ("Ihssane", "إحسان"), ("Manal", "منال"), ("Widad", "وداد"),
          ("Yousra", "يسرى"), ("Nawal", "نوال"), ("Jihane", "جيهان"), ("Maha", "مها"), ("Rim", "ريم"),
          ("Dounia", "دنيا")]
ROOTS = [("Alaoui", "علوي"), ("Idrissi", "إدريسي"), ("Bennani", "بناني"), ("Tazi", "تازي"), ("Fassi", "فاسي"),
         ("Berrada", "برادة"), ("Amrani", "عمراني"), ("Kettani", "كتاني"), ("Sqalli", "صقلي"), ("Jelloun", "جلون"),
         ("Chraibi", "شرايبي"), ("Lahlou", "لحلو"), ("Tahiri", "طاهري"), ("Ouazzani", "وزاني"), ("Filali", "فيلالي"),
         ("Hassani", "حسني"), ("Mansouri", "منصوري"), ("Mernissi", "مرنيسي"), ("Naciri", "ناصري"), ("Slaoui", "سلاوي"),
         ("Rifi", "ريفي"), ("Soussi", "سوسي"), ("Zemmouri", "زموري"), ("Jabri", "جابري"), ("Hilali", "هلالي"),
         ("Kadiri", "قادري"), ("Bakkali", "بقالي"), ("Harrak", "حراق"), ("Chaoui", "شاوي"), ("Doukkali", "دكالي"),
         ("Zerhouni", "زرهوني"), ("Tadlaoui", "تادلاوي"), ("Marrakchi", "مراكشي"), ("Meknassi", "مكناسي"),
         ("Rbati", "رباطي"), ("Tanjaoui", "طنجاوي"), ("Oujdi", "وجدي"), ("Sahraoui", "صحراوي"), ("Khalfi", "خلفي"),
         ("Badaoui", "بدوي"), ("Karimi", "كريمي"), ("Azizi", "عزيزي"), ("Haddad", "حداد"), ("Najjar", "نجار"),
         ("Khayat", "خياط"), ("Sabbagh", "صباغ"), ("Attar", "عطار"), ("Bennis", "بنيس"), ("Guessous", "كسوس"),
         ("Lazrak", "لزرق"), ("Moussaoui", "موساوي"), ("Youssfi", "يوسفي"), ("Hamdaoui", "حمداوي"), ("Saidi", "سعيدي"),
         ("Rachidi", "رشيدي"), ("Omari", "عمري"), ("Ouahmane", "وحمان"), ("Baha", "باها"), ("Oumghar", "أمغار"),
         ("Taleb", "طالب"), ("Idir", "إيدير"), ("Hammou", "حمو"), ("Ouali", "والي"), ("Bouzid", "بوزيد"),
         ("Abbou", "عبو"), ("Addi", "عدي"), ("Akka", "عكا"), ("Boujemaa", "بوجمعة"), ("Mimoun", "ميمون"),
         ("Messaoud", "مسعود"), ("Benjelloun", "بنجلون"), ("Sefrioui", "صفريوي"), ("Guerraoui", "كراوي"),
         ("Lamrani", "لمراني"), ("Benkirane", "بنكيران"), ("Benchekroun", "بنشقرون"), ("Cherkaoui", "شرقاوي"),
         ("Ghazi", "غازي"), ("Hajji", "حجي"), ("Jamai", "جامعي"), ("Kabbaj", "قباج"), ("Lamghari", "لمغاري"),
         ("Mekouar", "مكوار"), ("Naji", "ناجي"), ("Ouarzazi", "ورزازي"), ("Qasmi", "قاسمي"), ("Raiss", "رايس"),
         ("Sebti", "سبتي"), ("Touimi", "تويمي"), ("Wahbi", "وهبي"), ("Yacoubi", "يعقوبي"), ("Zniber", "زنيبر"),
         ("Bouazza", "بوعزة"), ("Chafik", "شفيق"), ("Dahbi", "ذهبي"), ("Ennaji", "الناجي"), ("Fikri", "فكري"),
         ("Ghallab", "غلاب"), ("Hakimi", "حكيمي"), ("Iraqi", "عراقي"), ("Jettou", "جطو"), ("Khattabi", "خطابي")]
PARTICLES = [("", "", 0.45), ("El ", "ال", 0.30), ("Ben ", "بن ", 0.17), ("Ait ", "آيت ", 0.08)]
CITY_PLACES = ["Casablanca", "Rabat", "Fès", "Marrakech", "Tanger", "Agadir", "Oujda", "Meknès", "Nador", "Tétouan"]
FIRST_BIRTH = dt.date(1940, 1, 1)
BIRTH_DAYS = (dt.date(2008, 12, 31) - FIRST_BIRTH).days + 1
CNIE_LETTERS = ["BE", "BK", "AB", "BH", "CD", "EE", "FA", "GM", "HH", "JC", "K", "L", "M", "N", "X", "Z"]


def _cumulative(weights: list[float]) -> list[float]:
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


# a name's rank r weighs 1/(r+2)^0.8: the first given name is ~10% of its sex, the first root ~8% of families
_MALE = _cumulative([1 / (r + 2) ** 0.8 for r in range(len(MALE))])
_FEMALE = _cumulative([1 / (r + 2) ** 0.8 for r in range(len(FEMALE))])
_ROOTS = _cumulative([1 / (r + 2) ** 0.8 for r in range(len(ROOTS))])
_PARTICLES = _cumulative([p[2] for p in PARTICLES])


def _unit(i: int, salt: int) -> float:
    """A well-mixed number in [0, 1) from i (splitmix64's finaliser)."""
    z = (i * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


def _pick(cumulative: list[float], u: float) -> int:
    return min(bisect.bisect_right(cumulative, u), len(cumulative) - 1)


def citizen(i: int, posts: list[tuple[str, str, str]]) -> dict:
    """Generated citizen number i (id i + 1) at one of `posts` ((code, country, city), weighted by order: the first
    posts are the busiest)."""
    sex = "F" if _unit(i, 1) < 0.5 else "M"
    given = (FEMALE if sex == "F" else MALE)[_pick(_FEMALE if sex == "F" else _MALE, _unit(i, 2))]
    root = ROOTS[_pick(_ROOTS, _unit(i, 3))]
    particle = PARTICLES[_pick(_PARTICLES, _unit(i, 4))]
    post = posts[int(len(posts) * _unit(i, 5) ** 1.6)]  # skewed towards the first posts
    block, number = divmod(i, 1_000_000)
    return {"id": i + 1, "registration_id": f"MRE-{i + 1:07d}", "given_name_latin": given[0],
            "family_name_latin": particle[0] + root[0], "given_name_arabic": given[1],
            "family_name_arabic": particle[1] + root[1],
            "birth_date": FIRST_BIRTH + dt.timedelta(days=int(BIRTH_DAYS * _unit(i, 6))),
            "birth_place": CITY_PLACES[int(len(CITY_PLACES) * _unit(i, 7))], "sex": sex,
            "cnie": f"{CNIE_LETTERS[block % len(CNIE_LETTERS)]}{(number * 7919 + block) % 1_000_000:06d}",
            "passport_number": f"R{(i * 7919) % 100_000_000:08d}" if _unit(i, 8) < 0.7 else None,
            "country": post[1], "city": post[2], "address_lines": "", "phone": None, "email": None,
            "post_code": post[0], "status": "ACTIVE"}
