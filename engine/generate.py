"""A seeded generator of realistic cross-domain data, written in the upload contract (`python -m engine generate`).

Two domains shaped like the shipped Amazon Arts & Office dataset, at any multiple of its size: Zipf-like item
popularity with a share of items never bought, heavy-tailed user activity, users shared across the domains, and
latent topics (each user prefers a few, each item belongs to one) that show in the items' category paths, titles and
brands, and are linked across domains so that one domain's behaviour predicts the other's. Items launch over time, so
some sell only late. Everything is vectorised numpy and Arrow; one seed gives byte-identical files.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .data import NAME
from .errors import CrossLensError

# Figures of the shipped dataset (assets/data/amazon-arts-office, measured once; never read here), per domain: users,
# rows of items.parquet, interactions, the slope of log(item count) on log(popularity rank), and per-user interactions:
# the floor (the source kept users with 5 or more), the most, and (mu, sigma) of a lognormal fitted to the counts above
# the floor (15% / 25% of users at the floor, median 8 / 7, 90th percentile 22 / 19). All 9,577 users are in both.
SHIPPED = {"arts": dict(users=9577, items=18639, interactions=110877, zipf=0.77, floor=5, most=57,
                        activity=(1.27, 1.24)),
           "office": dict(users=9577, items=19757, interactions=97664, zipf=0.89, floor=5, most=51,
                          activity=(0.92, 1.35))}
SHARED_USERS = 9577
# Items listed but never bought, on top of the ~13% that the popularity tail and late launches leave unsold: about
# 14% / 21% unsold in all, where the shipped office has 20% (3,977 of 19,757) and arts 0% (its file lists sold items).
LISTED_UNSOLD = {"arts": 0.0, "office": 0.03}
POPULARITY_OFFSET = 0.003   # Zipf-Mandelbrot offset, per item of the domain: a flatter head (top 10% sell 44-51%)
TOPIC_SIZES = 0.5           # Zipf exponent of topic sizes: some categories hold many more items and buyers
ACTIVITY_CORRELATION = 0.2  # of a user's log activity in the two domains (0.21 in the shipped data)
INTERESTS = 3               # latent topics a user prefers, with Dirichlet weights
LINKED = 0.75               # chance that a user's interest shows as the linked topic in each domain (else any topic)
EXPLORE = 0.2               # share of picks made by popularity alone, outside the user's interests
REBUY = 0.25                # share of repeated picks kept as buying again (~1% of rows, as shipped); the rest redrawn
CATALOGUE = 0.6             # share of items on sale from the start; the rest launch evenly over the span
NO_BRAND = 0.3              # share of items without a brand (30% in the shipped data)
ITEMS_PER_TOPIC = 100       # small catalogues get fewer topics: a topic needs room for a heavy user's distinct picks
SPAN = (1388534400, 1538352000)  # 2014-01-01 to 2018-10-01, the last years of the Amazon review data
DAY = 86400
RATING_CUMULATIVE = np.cumsum([[0.03, 0.04, 0.08, 0.20, 0.65], [0.08, 0.08, 0.14, 0.25, 0.45]], axis=1)[:, :4]
# (1-5 stars, mostly 5 as on Amazon; picks outside a user's interests (second row) are rated a little lower)

# Per domain: its category root, then per department "Department | Line: subtypes | Line: subtypes ..." (lines that
# start with "    |" go on the department above).
# A topic is a (department, line); its subtypes are the fourth category level and a title word. The n-th topic of one
# domain is linked to the n-th of the other (departments are listed in loosely related order).
VOCABULARY = {"arts": ("Arts, Crafts & Sewing", """
Painting | Acrylic Paint: heavy body, fluid, metallic, matte | Watercolor Paint: tube, pan, liquid, gouache
    | Oil Paint: artist grade, student grade, water mixable, alkyd | Paint Brushes: round, flat, filbert, fan
    | Canvas: stretched, panel, roll, pad
Drawing | Pencils: graphite, charcoal, colored, watercolor | Markers: alcohol, brush tip, fineliner, paint
    | Pastels: soft, oil, chalk, pan | Sketchbooks: spiral, hardbound, toned, mixed media
    | Erasers: kneaded, vinyl, electric, precision
Sewing | Thread: polyester, cotton, embroidery, serger | Needles: universal, quilting, ballpoint, hand sewing
    | Notions: wonder clips, pins, seam ripper, bobbins | Fabric: quilting cotton, fleece, linen, felt
    | Sewing Storage: box, tote, pin cushion, organizer
Knitting & Crochet | Yarn: wool, acrylic, cotton, chunky
    | Knitting Needles: circular, straight, double pointed, interchangeable
    | Crochet Hooks: aluminum, ergonomic, steel, bamboo | Stitch Markers: locking, ring, coil, counter
    | Looms: round, long, blanket, sock
Beading & Jewelry Making | Beads: seed, glass, wood, gemstone | Jewelry Wire: copper, memory, beading, silver plated
    | Findings: clasps, jump rings, ear hooks, crimp beads | Jewelry Tools: pliers, cutters, mandrel, bead mat
    | Cord: elastic, leather, waxed, satin
Scrapbooking & Paper Crafts | Cardstock: textured, glitter, kraft, pastel | Stickers: puffy, washi, alphabet, foil
    | Stamps: clear, rubber, wood mounted, date | Die Cuts: metal dies, embossing folders, punches, stencils
    | Adhesives: glue dots, tape runner, foam squares, glue stick
Crafting | Glue Guns: mini, full size, cordless, dual temp | Craft Foam: sheets, shapes, glitter foam, blocks
    | Pom Poms: assorted, glitter, mini, jumbo | Modeling Clay: polymer, air dry, oven bake, kids
    | Resin: epoxy, UV, molds, pigments
Framing & Display | Picture Frames: wood, metal, floating, shadow box | Mat Boards: precut, acid free, double, bevel
    | Easels: tabletop, studio, display, field | Frame Hardware: hangers, points, wire, bumpers
    | Display Stands: plate, acrylic, wire, tiered
"""), "office": ("Office Products", """
Printer Ink & Toner | Inkjet Cartridges: black, tri color, high yield, combo pack
    | Toner Cartridges: black, color, drum unit, MICR | Label Tape: laminated, fabric, heat shrink, glossy
    | Photo Paper: glossy, matte, satin, cardstock | Ribbons: typewriter, calculator, POS, thermal transfer
Writing Instruments | Ballpoint Pens: retractable, stick, refillable, gel
    | Highlighters: chisel, pastel, dual tip, gel | Pencils: mechanical, wood cased, colored, carpenter
    | Permanent Markers: fine point, chisel, ultra fine, twin tip
    | Fountain Pens: converter, cartridge, calligraphy, luxury
Filing & Organization | File Folders: manila, hanging, expanding, classification
    | Binders: ring, view, heavy duty, presentation | Labels: address, shipping, file folder, removable
    | Desk Organizers: mesh, drawer, file sorter, letter tray | Storage Boxes: bankers, archive, magazine file, drawer
Desk Accessories | Staplers: desktop, heavy duty, electric, long reach
    | Tape Dispensers: weighted, handheld, packing, magic | Scissors: stainless, titanium, ambidextrous, kids
    | Mouse Pads: gaming, wrist rest, extended, ergonomic | Calendars: desk pad, wall, planner, tabletop
Office Electronics | Calculators: scientific, graphing, printing, basic
    | Label Makers: handheld, desktop, bluetooth, industrial | Laminators: thermal, pouch, cold, roll
    | Shredders: cross cut, micro cut, strip cut, auto feed | Headsets: wireless, USB, noise cancelling, mono
Paper | Copy Paper: letter, legal, bright white, recycled | Notebooks: spiral, composition, college ruled, graph
    | Sticky Notes: lined, super sticky, pop up, pastel | Index Cards: ruled, blank, colored, spiral
    | Envelopes: security, window, catalog, padded
School Supplies | Backpacks: laptop, rolling, mini, classic | Pencil Cases: zippered, box, pouch, canvas
    | Rulers: metal, plastic, folding, triangle | School Glue: liquid, gel, stick, washable
    | Lunch Boxes: insulated, bento, metal, kids
Presentation & Mailing | Whiteboards: magnetic, mobile, glass, dry erase | Bulletin Boards: cork, fabric, combo, felt
    | Shipping Supplies: bubble mailers, boxes, packing tape, poly mailers
    | Name Badges: holders, lanyards, reels, adhesive | Easel Pads: self stick, grid, lined, plain
""")}
ADJECTIVES = ("Premium", "Professional", "Deluxe", "Classic", "Essential", "Ultra", "Heavy Duty", "Eco", "Compact",
              "Value", "Studio", "Everyday", "Signature", "Original", "Pro Series", "Soft Touch")
COLORS = ("Black", "White", "Red", "Blue", "Navy", "Green", "Teal", "Pink", "Purple", "Yellow", "Orange", "Gray",
          "Silver", "Gold", "Assorted Colors", "Pastel", "Neon", "Natural")
PACKS = tuple(form.format(n) for n in (1, 2, 3, 4, 6, 8, 10, 12, 20, 24, 36, 48, 50, 100)
              for form in ("Pack of {}", "{} Count", "{} Pieces"))
BENEFITS = ("smooth, consistent results every time", "long lasting and easy to use", "a favourite of teachers and pros",
            "great value for everyday use", "acid free and archival safe", "built to last", "bright, vivid colors",
            "lightweight and easy to carry", "tested for quality and safety", "a thoughtful gift for any occasion")
BRAND_HEADS = ("Art", "Nor", "Vel", "Crea", "Zen", "Blu", "Pro", "Kra", "Lum", "Mar", "Ori", "Sol", "Tri", "Ver",
               "Qui", "Dex", "Fab", "Hue", "Ink", "Sta")
BRAND_TAILS = ("co", "ly", "max", "ora", "tek", "works", "ville", "line", "ista", "mark", "craft", "ford", "point",
               "wise", "io")
BRANDS_PER_DEPARTMENT = 24  # brands specialise: each department draws from its own few


def topics(domain_kind: str) -> tuple[str, list[tuple[str, str, list[str]]]]:
    """(category root, [(department, line, subtypes)]) of a domain kind."""
    root, text = VOCABULARY[domain_kind]
    rows = []
    for department, *lines in (line.split(" | ") for line in text.replace("\n    |", " |").strip().splitlines()):
        rows += [(department, name, subtypes.split(", ")) for name, subtypes in (ln.split(": ") for ln in lines)]
    return root, rows


def check_arguments(scale, out: Path, domains: list[str]) -> None:
    problems = []
    least = 2 * ITEMS_PER_TOPIC / min(v["items"] for v in SHIPPED.values())
    if not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
        problems.append(f"--scale must be a positive number (1 = the size of the shipped dataset), not {scale!r}")
    elif scale < least:
        problems.append(f"--scale {scale:g} gives too few items (under {2 * ITEMS_PER_TOPIC} a domain); use at least "
                        f"{np.ceil(least * 1e4) / 1e4:g}")
    if len(domains) != 2 or len(set(domains)) != 2 or not all(NAME.fullmatch(d) for d in domains):
        problems.append(f"--domains must name two different domains, like 'arts,office' (each 1-40 lower-case letters, "
                        f"digits, '_' or '-'), not {','.join(domains)!r}")
    if out.exists() and not out.is_dir():
        problems.append(f"--out {out} is an existing file; give a folder to write the files into")
    if problems:
        raise CrossLensError("cannot generate: " + "; ".join(problems) + ".")


def make_items(rng, kind: str, domain: str, n: int, used: np.ndarray, topic_share: np.ndarray):
    """(items table, per item: its topic (an index into `used`, the vocabulary's topics in play), popularity weight
    and launch in seconds after the span starts)."""
    root, rows = topics(kind)
    rows, n_topics = [rows[t] for t in used], len(used)
    topic = rng.permutation(np.concatenate([np.arange(n_topics), rng.choice(n_topics, n - n_topics, p=topic_share)]))
    # Zipf-Mandelbrot popularity over a random order of the items, each topic's total then set to its share of buyers
    # (else a small topic's few items would share its buyers and flatten the head)
    weight = rng.permutation((np.arange(1, n + 1) + POPULARITY_OFFSET * n) ** -SHIPPED[kind]["zipf"])
    weight *= topic_share[topic] / np.bincount(topic, weight, n_topics)[topic]
    launch = np.where(rng.random(n) < CATALOGUE, 0, rng.integers(0, SPAN[1] - SPAN[0], n))
    unsold = rng.random(n) < LISTED_UNSOLD[kind]
    first = np.unique(topic, return_index=True)[1]
    launch[first], unsold[first] = 0, False  # every topic sells from day one, so every pick finds an item
    weight[unsold] = 0.0
    departments = list(dict.fromkeys(r[0] for r in rows))
    department = np.array([departments.index(r[0]) for r in rows])[topic]
    take = lambda words, index: pc.take(pa.array(list(words)), pa.array(index))
    pick = lambda words: take(words, rng.integers(0, len(words), n))
    line, subtype = take([r[1] for r in rows], topic), take([s.title() for r in rows for s in r[2]],
                                                             topic * 4 + rng.integers(0, 4, n))  # 4 subtypes a line
    brands = rng.permutation([h + t for h in BRAND_HEADS for t in BRAND_TAILS])
    brand_rank = np.minimum(rng.zipf(1.6, n) - 1, BRANDS_PER_DEPARTMENT - 1)  # a few big brands per department
    brand = pc.if_else(pa.array(rng.random(n) < NO_BRAND), "",
                       take(brands, department * BRANDS_PER_DEPARTMENT + brand_rank))
    adjective, department_name = pick(ADJECTIVES), take(departments, department)
    join = lambda sep, *parts: pc.binary_join_element_wise(*parts, sep)
    title = join(", ", pc.utf8_trim_whitespace(join(" ", brand, adjective, subtype, line)), pick(COLORS), pick(PACKS))
    description = join("", join(" ", adjective, pc.utf8_lower(subtype), pc.utf8_lower(line), "for",
                                pc.utf8_lower(department_name), "-", pick(BENEFITS)), ".")
    item_id = join("_", domain, pc.cast(pa.array(np.arange(n)), pa.string()))
    table = pa.table({"item_id": item_id, "title": title, "description": description,
                      "categories": join(" > ", root, department_name, line, subtype), "brand": brand})
    return table, {"topic": topic, "weight": weight, "launch": launch, "item_id": item_id}


def pick_items(rng, item: dict, topic: np.ndarray, when: np.ndarray) -> np.ndarray:
    """One item per row: from the row's topic, by popularity, among the items launched by then. Items are sorted by
    (topic, launch), so the items on sale at a time are a prefix of their topic's run of the cumulative weights."""
    order = np.lexsort((item["launch"], item["topic"]))
    cum = np.cumsum(item["weight"][order])
    key = item["topic"][order] * (1 << 32) + item["launch"][order]
    start = np.searchsorted(item["topic"][order], np.arange(item["topic"].max() + 1))[topic]
    before = np.concatenate([[0.0], cum])[start]
    last = np.searchsorted(key, topic * (1 << 32) + when, side="right") - 1  # never before start: day-one items
    chosen = np.searchsorted(cum, before + rng.random(len(topic)) * (cum[last] - before), side="right")
    return order[np.clip(chosen, start, last)]


def repeated(user: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Rows whose (user, item) pair an earlier row (in a stable sort) already has."""
    key = user * (int(chosen.max()) + 1) + chosen
    order = np.argsort(key, kind="stable")
    again = np.zeros(len(key), bool)
    again[order[1:]] = key[order[1:]] == key[order[:-1]]
    return again


def generate(scale: float = 1.0, out=".", seed: int = 0, domains=("arts", "office")) -> dict:
    """Write {domain}.parquet (interactions) and {domain}_items.parquet of two domains into `out`; returns a summary.
    The first domain is shaped like the shipped arts, the second like office."""
    began, out, domains = time.perf_counter(), Path(out), [d.strip() for d in domains]
    check_arguments(scale, out, domains)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = dict(zip(domains, SHIPPED))
    shared = round(SHARED_USERS * scale)
    only = {d: max(round(SHIPPED[k]["users"] * scale) - shared, 0) for d, k in kinds.items()}  # none at shipped rates
    n_users = shared + sum(only.values())
    user_name = pc.binary_join_element_wise("u", pc.cast(pa.array(rng.permutation(n_users)), pa.string()), "")
    # each user is active over a window of months to years somewhere in the span, one history across both domains
    window = np.minimum(rng.lognormal(np.log(400 * DAY), 1.0, n_users), SPAN[1] - SPAN[0])
    begin = rng.random(n_users) * (SPAN[1] - SPAN[0] - window)
    activity = rng.standard_normal(n_users)
    n_topics = int(np.clip(min(round(v["items"] * scale) for v in SHIPPED.values()) // ITEMS_PER_TOPIC, 2,
                           len(topics("arts")[1])))
    used = np.sort(rng.choice(len(topics("arts")[1]), n_topics, replace=False))  # the same in both: linked
    topic_share = rng.permutation(np.arange(1, n_topics + 1) ** -TOPIC_SIZES)
    topic_share /= topic_share.sum()  # big categories have many fans: interests follow topic sizes
    interest = rng.choice(n_topics, (n_users, INTERESTS), p=topic_share)
    interest_weight = np.cumsum(rng.dirichlet(np.ones(INTERESTS), n_users), axis=1)
    summary, offset = {}, shared
    for domain, kind in kinds.items():
        shape = SHIPPED[kind]
        users = np.concatenate([np.arange(shared), np.arange(offset, offset + only[domain])])
        offset += only[domain]
        items, item = make_items(rng, kind, domain, round(shape["items"] * scale), used, topic_share)
        # heavy-tailed activity above the source's floor, mildly correlated with the same user's other domain
        rho = ACTIVITY_CORRELATION
        z = rho * activity[users] + np.sqrt(1 - rho ** 2) * rng.standard_normal(len(users))
        (mu, sigma), extra = shape["activity"], shape["most"] - shape["floor"]
        user = np.repeat(users, shape["floor"] + np.minimum(np.floor(np.exp(mu + sigma * z)), extra).astype(int))
        when = (begin[user] + rng.random(len(user)) * window[user]).astype(np.int64)
        # a user's interests show here as the linked topic (the same index), or less often as any topic
        own = np.where(rng.random((n_users, INTERESTS)) < LINKED, interest,
                       rng.integers(0, n_topics, (n_users, INTERESTS)))
        topic = own[user, np.minimum((rng.random(len(user))[:, None] > interest_weight[user]).sum(1), INTERESTS - 1)]
        explore = rng.random(len(user)) < EXPLORE  # these follow popularity: topics by the weight they sell
        mass = np.bincount(item["topic"], item["weight"], n_topics)
        topic[explore] = rng.choice(n_topics, int(explore.sum()), p=mass / mass.sum())
        chosen = pick_items(rng, item, topic, when)
        rebuy = rng.random(len(user)) < REBUY
        for _ in range(3):  # a few rounds redraw most repeats (heavy users of small topics keep some: dropped)
            again = repeated(user, chosen) & ~rebuy
            chosen[again] = pick_items(rng, item, topic[again], when[again])
        keep = np.flatnonzero(~(repeated(user, chosen) & ~rebuy))
        rating = (rng.random(len(user))[:, None] > RATING_CUMULATIVE[explore.astype(int)]).sum(1) + 1
        keep = keep[np.lexsort((when[keep], user[keep]))]  # each user's history in time order
        interactions = pa.table({"user_id": pc.take(user_name, pa.array(user[keep])),
                                 "item_id": pc.take(item["item_id"], pa.array(chosen[keep])),
                                 "timestamp": pa.array(when[keep] + SPAN[0]),
                                 "rating": pa.array(rating[keep], pa.int8())})
        write(interactions, out / f"{domain}.parquet")
        write(items, out / f"{domain}_items.parquet")
        summary[domain] = {"users": len(np.unique(user[keep])), "items": items.num_rows, "interactions": len(keep),
                           "items_never_bought": items.num_rows - len(np.unique(chosen[keep]))}
    return {"domains": summary, "shared_users": shared, "scale": scale, "seed": seed, "folder": str(out),
            "seconds": round(time.perf_counter() - began, 2)}


def write(table: pa.Table, path: Path) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
