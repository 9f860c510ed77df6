#!/usr/bin/env python3
"""Generate the demo data set ``examples/support_tickets.jsonl``.

The file holds about 400 synthetic English customer-support messages sent to
"Larkfield", a fictional online shop with its own payment card and app. Each
line is one JSON object::

    {"id": "st-0001", "text": "Where is my order #482913? ...", "label": "delivery"}

The labels are exactly the five defined in ``guidelines/v1.md``:
``billing``, ``delivery``, ``account``, ``technical`` and ``out_of_scope``.
They are roughly, not exactly, balanced (90/90/80/80/60).

Texts are built from many templates per label filled with slot values
(products, amounts, order numbers, dates, devices, cities, error codes, ...),
wrapped in optional greetings and sign-offs, and now and then given a typo or
written in lower case, so that lengths vary (5-40 words) and no two texts are
identical. About one template in six per label is deliberately confusable:
it mentions another label's topic (a charge for an undelivered parcel, a login
problem right after a payment, ...) while the label follows the decision rules
of ``guidelines/v1.md``. That gives active learning something to work on.

The output is fully deterministic: a single ``random.Random(7)`` drives every
choice and only the standard library is used. Re-run it from the repository
root with::

    python scripts/make_sample.py

which rewrites ``examples/support_tickets.jsonl`` byte for byte the same.
An optional argument gives another output path.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

SEED = 7
OUT = Path(__file__).resolve().parent.parent / "examples" / "support_tickets.jsonl"
MIN_WORDS, MAX_WORDS = 5, 40

COUNTS = {
    "billing": 90,
    "delivery": 90,
    "account": 80,
    "technical": 80,
    "out_of_scope": 60,
}

# --------------------------------------------------------------------------- slot fillers

SLOTS: dict[str, list[str]] = {
    "product": [
        "wireless headphones", "coffee grinder", "winter jacket", "phone case", "standing desk",
        "yoga mat", "kettle", "running shoes", "board game", "desk lamp", "laptop stand",
        "backpack", "bed sheets", "blender", "smart watch", "air fryer", "office chair",
        "bluetooth speaker", "hair dryer", "set of saucepans", "kids' bike", "duvet",
        "electric toothbrush", "garden hose", "printer ink", "mirror", "rug", "toaster",
    ],
    "date": [
        "yesterday", "on Monday", "last Tuesday", "on Friday", "two weeks ago", "on 3 March",
        "on the 14th", "last week", "three days ago", "on 28 November", "this morning",
        "at the weekend", "on 9 June", "ten days ago",
    ],
    "until": ["Thursday", "the 20th", "next Monday", "the end of the month", "Sunday evening"],
    "due": [
        "on Tuesday", "on Friday", "yesterday", "last week", "on the 12th", "on Monday",
        "at the weekend", "on 5 October", "two days ago",
    ],
    "device": [
        "iPhone 13", "iPhone SE", "Samsung Galaxy S22", "Pixel 7", "iPad", "Windows laptop",
        "MacBook Air", "Android tablet", "Huawei P30", "OnePlus 9", "Galaxy A52", "work PC",
    ],
    "browser": [
        "Chrome", "Firefox", "Safari", "Edge", "Chrome on Android", "Safari on my iPhone",
        "Firefox on Linux", "Opera",
    ],
    "city": [
        "Leeds", "Manchester", "Bristol", "Glasgow", "Cardiff", "Dublin", "Birmingham",
        "Edinburgh", "Newcastle", "Belfast", "Norwich", "Brighton", "York", "Aberdeen",
        "Plymouth", "Nottingham",
    ],
    "error": [
        "error 500", "error E-102", "ERR_TIMEOUT", "code 4031", "'Something went wrong'",
        "error 0x80070005", "a 502 Bad Gateway", "'Session expired' error", "error PAY-17",
        "'Unexpected token' error",
    ],
    "code": ["SPRING20", "WELCOME10", "FREESHIP", "LARK15", "BLACKFRIDAY", "SAVE5", "VIP25"],
    "name": [
        "Sarah", "Tom", "Priya", "James", "Aisha", "Liam", "Chloe", "Mohammed", "Emma",
        "Daniel", "Fiona", "Olu", "Grace", "Marek",
    ],
    "courier": ["the courier", "the driver", "ParcelGo", "SwiftPost", "the delivery guy"],
    "fee": ["late payment fee", "card fee", "currency conversion fee", "service charge",
            "admin fee", "restocking fee"],
    "dish": ["lasagne", "banana bread", "a Thai green curry", "pancakes", "risotto",
             "sourdough", "shepherd's pie", "chocolate brownies"],
    "genre": ["crime", "sci-fi", "fantasy", "history", "romance", "horror"],
    "team": ["Liverpool", "Arsenal", "Celtic", "Man United", "Chelsea", "Leeds United"],
    "country": ["Japan", "Portugal", "Canada", "Iceland", "Peru", "Vietnam", "Kenya"],
    "day": ["tomorrow", "this weekend", "on Saturday", "next week", "tonight"],
    "pet": ["cat", "dog", "hamster", "parrot", "rabbit"],
}


def _amount(rng: random.Random) -> str:
    pounds = rng.choice([rng.randint(3, 60), rng.randint(20, 250), rng.randint(100, 900)])
    return f"£{pounds}.{rng.choice(['00', '99', '49', '50', '95', '20'])}"


def _order(rng: random.Random) -> str:
    return f"#{rng.randint(100000, 999999)}"


def _small_amount(rng: random.Random) -> str:
    return f"£{rng.randint(2, 14)}.{rng.choice(['99', '95', '49', '50'])}"


def _last4(rng: random.Random) -> str:
    return f"{rng.randint(0, 9999):04d}"


GENERATED = {"amount": _amount, "small_amount": _small_amount, "order": _order, "last4": _last4}

# --------------------------------------------------------------------------- templates
# Templates marked "# confusable" mention another label's topic on purpose; their label
# follows the decision rules in guidelines/v1.md.

TEMPLATES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for order {order}. Can you refund one of the payments?",
        "There's a payment of {amount} on my statement, taken {date}, that I don't recognise.",
        "Why was I charged {amount} when the {product} was listed at a lower price?",
        "I returned the {product} {date} but still haven't received my refund.",
        "Can I get a VAT invoice for order {order}? I need it for my expenses claim.",
        "My card was declined at checkout but the money still left my account.",
        "How do I change the card you charge for my monthly Larkfield Plus subscription?",
        "I cancelled my membership {date} but you took {amount} again.",
        "The discount code {code} didn't apply, so I paid full price. Can you refund the difference?",
        "What is this {fee} of {amount}?",
        "You charged me for shipping even though my basket was over the free delivery threshold.",
        "Is it possible to pay for the {product} in instalments?",
        "The refund for order {order} went to my old card ending {last4}, which is closed. What happens now?",
        "Please explain the {fee} on my last payment, nobody told me about it.",
        "I was billed {amount} for a {product} I never ordered.",
        "When will the pending charge of {amount} drop off my account?",
        "My gift card balance is wrong, it should still have {amount} on it.",
        "Can you email me a receipt for the {product}? I can't find it anywhere.",
        "The {product} dropped to {amount} the day after I bought it, can I get a price adjustment?",
        "Do you accept PayPal or only card payments?",
        "Interest was added to my Larkfield card statement even though I paid in full {date}.",
        "refund for order {order} please??",
        "How long do refunds take to show on a credit card?",
        "My direct debit for the card repayment was taken twice this month.",
        "Can I split the payment for order {order} between two cards?",
        "I was promised a {amount} credit as compensation and it never appeared.",
        "Refund still missing, order {order}.",
        "I bought a {product} for my mum's birthday {date} and paid {amount}, but my bank shows three separate charges for it. I've checked with the bank and they say the payments came from you, so please look into it.",
        "I have been a customer for years and this is the first time I've had to complain. My statement shows a {fee} of {amount} that nobody ever mentioned when I signed up for the card.",
        # confusable
        "My parcel never arrived and I've been charged {amount} for it. I want my money back, not a replacement.",
        "{courier} lost order {order}. Please refund the full amount including shipping.",
        "I paid extra for next-day delivery but the {product} came a week late. Can I get the shipping fee back?",
        "The app froze during checkout and now I can see two payments of {amount} for one order.",
        "I closed my account {date} but you still charged my card ending {last4}.",
        "The {product} arrived broken. I don't want another one, just a refund please.",
    ],
    "delivery": [
        "Where is my order {order}? I ordered {date} and the tracking still hasn't updated.",
        "My {product} was supposed to arrive {due} but it's still not here.",
        "Can I change the delivery address for order {order} to my work address in {city}?",
        "Tracking says delivered but there's nothing at my door or with the neighbours.",
        "The box was crushed and the {product} inside is broken. Can you send a replacement?",
        "Do you deliver to {city}, and how much does it cost?",
        "How long does standard shipping take to {city}?",
        "I received someone else's parcel instead of my {product}.",
        "Only part of my order arrived, the {product} is missing.",
        "Can {courier} leave the parcel with a neighbour if I'm out?",
        "I'm away until {until}, can you hold my delivery for order {order}?",
        "The tracking number you sent says 'not found' on the ParcelGo website.",
        "Can I pick up my order from a parcel locker in {city} instead?",
        "My delivery slot was {date} and nobody turned up.",
        "I want to send back the {product}. How do I book a collection?",
        "My parcel has been stuck in customs for over a week.",
        "You sent me the wrong {product}, it's not the model I ordered. Can you swap it?",
        "{courier} left my parcel out in the rain and everything is soaked.",
        "Is there a way to get the {product} delivered before Christmas?",
        "Can I add a safe place note to order {order}?",
        "My order was split into two parcels and only one has turned up.",
        "{courier} was really rude and threw the box over the gate.",
        "The parcel was delivered to the wrong house on my street in {city}.",
        "Do you offer next-day delivery to {city}?",
        "Still waiting for my {product}, ordered {date}.",
        "Where is my parcel? Order {order}.",
        "I ordered a {product} two weeks ago as a present and the tracking has said 'out for delivery' for four days now. The party is this weekend in {city}, so I really need to know if it will arrive in time.",
        "Second time asking: {courier} keeps trying to deliver to my old flat in {city} even though I changed the address on order {order} before it shipped.",
        # confusable
        "I paid {small_amount} for express shipping, so where is the parcel? It was due {due}.",
        "The app says my order is delivered but I never got it. Where is it?",
        "I paid for order {order} a week ago and it still hasn't been dispatched. When will it ship?",
        "I can see the payment went through, but there's no tracking for the {product} yet.",
        "My account shows order {order} as 'in transit' for 12 days, is it lost?",
    ],
    "account": [
        "I forgot my password and the reset email never arrives.",
        "My account has been locked after too many login attempts.",
        "How do I change the email address on my account?",
        "I want to close my account and have my data deleted.",
        "Someone logged into my account from {city}, that wasn't me!",
        "I've moved to {city}, how do I update the address on my profile?",
        "I got a new phone and can't receive the two-factor codes anymore.",
        "Can I add my partner as a second cardholder on my account?",
        "How do I change the phone number used for security codes?",
        "My name is spelled wrong on my account, it should be {name}.",
        "Can I have two accounts with the same email address?",
        "I never signed up but I keep getting emails about a Larkfield account.",
        "Please unsubscribe me from all marketing emails.",
        "Identity verification rejected my passport photo twice, what else can I send?",
        "How do I download a copy of the personal data you hold about me?",
        "I think my account was hacked, my password was changed {date}.",
        "Our joint account is still in my late father's name. How do I update it?",
        "How do I turn on two-step verification?",
        "Can I merge my old account into my new one? The old one has my order history.",
        "What's the minimum age to open an account?",
        "I'd like to change my username, is that possible?",
        "Why is my account asking me to verify my identity again?",
        "Can't log into my account.",
        "I've been trying to reset my password for two days. The reset email finally came, but the code had expired by the time I opened it, and now it says I have to wait 24 hours before trying again.",
        "My daughter used my login on her {device} and now I'm getting security alerts from {city}. How do I see which devices are signed in to my account and remove hers?",
        # confusable
        "Right after paying {amount} I was logged out and now it says my password is wrong.",
        "It says my account is suspended when I try to log in on my {device}.",
        "I can't track my order because I'm locked out of my account.",
        "My card ending {last4} was stolen, please freeze my account and stop anyone logging in.",
        "I'm not getting the login code by text since I changed networks.",
    ],
    "technical": [
        "The app keeps crashing on my {device} when I open the orders page.",
        "I get {error} every time I try to check out.",
        "The website won't load in {browser}, it's just a blank white page.",
        "Push notifications stopped working after the latest update on my {device}.",
        "The search bar returns no results, whatever I type.",
        "Product pictures don't load in the app, just grey boxes.",
        "The 'Add to basket' button does nothing on my {device}.",
        "Since the update the app drains my battery. Is that a known bug?",
        "The page keeps refreshing and I can't finish the form.",
        "I updated the app {date} and since then it's stuck on the loading screen.",
        "Dark mode makes the text unreadable in the settings menu.",
        "I can't upload a photo with my review, it just says file error.",
        "The app won't install on my {device}, it says the device is incompatible.",
        "Scanning the QR code in the app doesn't do anything.",
        "Your site is really slow today, is there an outage?",
        "The app logs me out every few minutes on my {device}.",
        "Links in your emails open a 404 page.",
        "The chat window on the website never loads in {browser}.",
        "Face ID stopped working in the app after I updated to the new version.",
        "Prices show as NaN in the basket on {browser}.",
        "The app is in German even though my phone is set to English.",
        "App crashing again on {device}.",
        "Every time I open the basket on my {device} the app freezes for about thirty seconds and then closes itself. I've already deleted it, reinstalled it and restarted the phone, and it still happens.",
        "Your website shows {error} whenever I try to open my past orders in {browser}. It works fine on my {device}, so I don't think it's my internet connection.",
        # confusable
        "The login page throws {error} after I enter my password, and I know the password is right.",
        "The password reset link in your email gives a 404 page.",
        "The card payment screen freezes at the bank verification step on my {device}.",
        "The tracking page crashes the app every time I tap it.",
        "Got {error} on the payment page, nothing was charged but I can't pay at all.",
    ],
    "out_of_scope": [
        "What's the weather going to be like in {city} {day}?",
        "Tell me a joke please, I've had a long day.",
        "Who won the {team} game last night?",
        "Can you recommend a good restaurant in {city}?",
        "Are you a robot or a real person?",
        "What's the capital of {country}?",
        "I'm bored, can you just talk to me for a bit?",
        "How do I make {dish}?",
        "Is it going to rain in {city} {day}?",
        "What's your favourite film?",
        "Can you help me with my maths homework?",
        "What time is it in {country} right now?",
        "Do you know any good podcasts?",
        "My {pet} just knocked over my plant, lol.",
        "Can you write me a short poem about autumn?",
        "What's the best way to learn Spanish?",
        "Can you recommend a good {genre} book?",
        "How many calories are in a banana?",
        "Why is the sky blue?",
        "Any tips for a first trip to {country}?",
        "What should I name my new {pet}?",
        "Do you think {team} will win the league?",
        "What's a good recipe for {dish} for six people?",
        "tell me a joke pls",
        "I'm planning a two-week trip to {country} next spring with my partner and our {pet} is staying with my sister. Any ideas what we absolutely shouldn't miss while we're there?",
        "Random question, but my friend and I have been arguing about this all evening: is a hot dog a sandwich or not? Please settle it for us.",
        # confusable
        "Which bank has the best mortgage rates at the moment?",
        "Thanks, that's all sorted now! Have a nice day.",
        "What do you think of the new {device}, is it worth it?",
        "Is there a good {pet} groomer in {city}? Asking for my neighbour.",
    ],
}

OPENERS = [
    "", "", "", "", "Hi,", "Hello,", "Hey,", "Hi there,", "Good morning,", "Hi team,",
    "Hello, hope you're well.", "Quick question:", "Urgent:", "Hi Larkfield,", "Dear support,",
    "Evening,", "Sorry to bother you,",
]
CLOSERS = [
    "", "", "", "", "Thanks.", "Thanks in advance!", "Cheers", "Please help.",
    "Any help appreciated.", "Regards, {name}", "Thank you!", "This is really frustrating.",
    "Thanks, {name}", "Please sort this out asap.", "Many thanks.", "ty",
]
# Extra context sentences that make in-scope messages longer and more realistic.
# Each maps to words that, if already in the message, make the extra redundant or contradictory.
EXTRAS = {
    "My order number is {order}.": ("#", "order"),
    "I've already tried twice.": ("twice", "tried", "second time"),
    "This is the second time I'm writing about this.": ("second time", "first time"),
    "I've been a customer for years.": ("years",),
    "I'm using the app on my {device}.": ("app", "device", "phone", "website", "site", " on my "),
    "Nobody answered on the phone.": ("phone",),
    "My card ends in {last4}.": ("card",),
    "I live in {city}.": tuple(SLOTS["city"]),
    "I need this fixed today.": ("today", "asap"),
}
# Chit-chat gets casual wrappers only (no "Urgent:" or "Please sort this out asap").
CASUAL_OPENERS = ["", "", "", "Hi,", "Hey,", "Hello,", "Random question:", "Hi there,", "Just wondering,"]
CASUAL_CLOSERS = ["", "", "", "Thanks!", "Cheers", ":)", "haha", "Thanks, {name}", "ty"]
# First words that keep their capital after a comma opener.
KEEP_CAPITAL = {"I", "I'm", "I've", "I'd", "ParcelGo", "SwiftPost", "Face", "Larkfield", "App"}

_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in GENERATED:
            return GENERATED[key](rng)
        return rng.choice(SLOTS[key])

    return _SLOT.sub(repl, template)


def add_typo(text: str, rng: random.Random) -> str:
    """Swap two adjacent letters, or drop one, inside a random longer word."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randint(1, len(w) - 3)
    if rng.random() < 0.6:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    else:
        w = w[:j] + w[j + 1:]
    words[i] = w
    return " ".join(words)


def make_text(template: str, label: str, rng: random.Random) -> str:
    body = fill(template, rng)
    if label == "out_of_scope":
        opener, closer = rng.choice(CASUAL_OPENERS), rng.choice(CASUAL_CLOSERS)
        extra = ""
    else:
        opener, closer = rng.choice(OPENERS), rng.choice(CLOSERS)
        extra = rng.choice(list(EXTRAS)) if rng.random() < 0.25 else ""
        if extra and any(w in (body + " " + closer).lower() for w in map(str.lower, EXTRAS[extra])):
            extra = ""
    closer = fill(closer, rng)
    extra = fill(extra, rng)
    if opener.endswith(",") and rng.random() < 0.7:
        first = body.split(" ", 1)[0]
        if first not in KEEP_CAPITAL:
            body = body[0].lower() + body[1:]
    text = " ".join(part for part in (opener, body, extra, closer) if part)
    style = rng.random()
    if style < 0.12:
        text = add_typo(text, rng)
    elif style < 0.20:
        text = text.lower()
    elif style < 0.25:
        text = text.rstrip(".!")
    return text


def generate(rng: random.Random) -> list[dict[str, str]]:
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, count in COUNTS.items():
        templates = TEMPLATES[label]
        made = 0
        attempts = 0
        while made < count:
            attempts += 1
            if attempts > count * 200:
                raise RuntimeError(f"could not make {count} unique texts for {label}")
            text = make_text(rng.choice(templates), label, rng)
            n_words = len(text.split())
            if not MIN_WORDS <= n_words <= MAX_WORDS or text.lower() in seen:
                continue
            seen.add(text.lower())
            rows.append((text, label))
            made += 1
    rng.shuffle(rows)
    return [{"id": f"st-{i:04d}", "text": t, "label": lab} for i, (t, lab) in enumerate(rows, 1)]


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    rows = generate(random.Random(SEED))

    texts = [r["text"] for r in rows]
    assert len(set(texts)) == len(texts), "duplicate texts"
    assert {r["label"] for r in rows} == set(COUNTS), "label set mismatch"
    assert all(MIN_WORDS <= len(t.split()) <= MAX_WORDS for t in texts), "length out of range"

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    size = out.stat().st_size
    assert size < 200_000, f"{out} is {size} bytes, over 200 KB"

    counts = {lab: sum(r["label"] == lab for r in rows) for lab in COUNTS}
    print(f"wrote {len(rows)} rows ({size} bytes) to {out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
