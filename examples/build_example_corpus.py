"""Re-create the bundled example corpus in `examples/data/` from downloaded packages.

Why: the project needs a small, permissively licensed multimodal retrieval set (text, image and
text+image queries with a fixed train / held-out split) for examples, smoke tests and training demos.
Everything here is deterministic for a given seed and the same package versions.

Inputs (download them into a temp dir, never into the repo):
    npm pack emoji-datasource-google && tar xzf emoji-datasource-google-*.tgz   -> package/
    npm pack emojilib && mkdir elib && tar xzf emojilib-*.tgz -C elib          -> elib/package/
    pip download scikit-image --no-deps -d skw                                  -> skw/*.whl

Usage:
    python examples/build_example_corpus.py --emoji-package /tmp/x/package \
        --emojilib /tmp/x/elib/package --skimage-wheel /tmp/x/skw/scikit_image-*.whl --seed 0
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

SKIP_SUBCATEGORIES = {"country-flag", "subdivision-flag", "keycap", "skin-tone"}
SKIP_CATEGORIES = {"Flags", "Component"}
INSTRUCTIONS = (
    "Retrieve the picture that matches both the image and the text.",
    "Use the image and the hint to find the matching item.",
)
EMOJI_INSTRUCTIONS = INSTRUCTIONS + ("Find the emoji described by the text and similar to the image.",)
BACKGROUNDS = ((255, 255, 255), (240, 240, 240), (255, 248, 225), (225, 240, 255), (230, 250, 230))

# skimage.data photos with a clear licence: file -> (caption, subcategory, text queries, hint).
PHOTOS: dict[str, tuple[str, str, tuple[str, str], str]] = {
    "astronaut.png": (
        "astronaut Eileen Collins in an orange flight suit next to the American flag",
        "people",
        ("NASA astronaut portrait in a flight suit", "woman astronaut posing with a US flag"),
        "astronaut",
    ),
    "camera.png": (
        "black and white photo of a man looking through a camera on a tripod",
        "people",
        ("cameraman filming on a lawn", "grayscale photo of a photographer with a tripod"),
        "cameraman",
    ),
    "brick.png": (
        "a brick wall seen at an angle, grayscale texture",
        "texture",
        ("bricks texture", "masonry wall pattern"),
        "bricks",
    ),
    "grass.png": (
        "close-up of grass, grayscale texture",
        "texture",
        ("lawn texture", "blades of grass pattern"),
        "grass",
    ),
    "gravel.png": (
        "gravel stones, grayscale texture",
        "texture",
        ("pebbles texture", "small rocks covering the ground"),
        "gravel",
    ),
    "text.png": (
        "handwritten characters photographed at an angle",
        "document",
        ("photo of handwriting", "scribbled symbols on a board"),
        "handwriting",
    ),
    "cell.png": (
        "a single cell floating in saline, microscope image",
        "microscopy",
        ("round cell under a microscope", "microscopy of a floating cell"),
        "cell",
    ),
    "coins.png": (
        "ancient Greek coins from Pompeii laid out in rows",
        "objects",
        ("old coins arranged in a grid", "collection of ancient coins"),
        "coins",
    ),
    "microaneurysms.png": (
        "grayscale close-up of retinal blood vessels with microaneurysms",
        "medical imaging",
        ("retina vessels close-up in grayscale", "fundus detail with microaneurysms"),
        "blood vessels",
    ),
    "horse.png": (
        "black silhouette of a horse",
        "silhouette",
        ("horse shape in black", "dark outline of a standing horse"),
        "silhouette",
    ),
    "clock_motion.png": (
        "a motion-blurred clock on a gray background",
        "objects",
        ("blurry wall clock", "clock photographed with motion blur"),
        "blurred clock",
    ),
    "ihc.png": (
        "immunohistochemistry stained tissue under a microscope, brown and blue",
        "microscopy",
        ("IHC staining of tissue", "brown stained tissue slide"),
        "stained tissue",
    ),
    "chelsea.png": (
        "Chelsea the tabby cat, close-up of its face",
        "animals",
        ("photo of a tabby cat", "close-up of a cat with green eyes"),
        "tabby cat",
    ),
    "coffee.png": (
        "a cup of espresso on a red saucer on a wooden table",
        "food & drink",
        ("espresso cup with a spoon", "coffee in a red cup"),
        "espresso",
    ),
    "hubble_deep_field.jpg": (
        "Hubble eXtreme Deep Field, thousands of galaxies in space",
        "astronomy",
        ("deep space galaxies", "telescope image of distant galaxies"),
        "galaxies",
    ),
    "retina.jpg": (
        "fundus photograph of a healthy human retina",
        "medical imaging",
        ("photo of the back of the eye", "eye fundus with blood vessels"),
        "retina",
    ),
    "rocket.jpg": (
        "Falcon 9 rocket on the launch pad at night before the DSCOVR launch",
        "space",
        ("SpaceX rocket ready for launch", "rocket on a launch pad at dusk"),
        "launch pad",
    ),
}


def _words(text: str) -> str:
    return "".join(re.findall(r"[a-z0-9]+", text.lower()))


def _caption(cldr: str) -> str:
    """emojilib's first keyword is the CLDR short name in snake case: make it a readable caption."""
    text = cldr.replace("_", " ").strip()
    return re.sub(r"(\w) s ", r"\1's ", text)


def _char(unified: str) -> str:
    return "".join(chr(int(cp, 16)) for cp in unified.split("-")).replace("\ufe0f", "")


def load_emoji(package: Path, emojilib: Path) -> list[dict[str, Any]]:
    """Emoji entries usable as retrieval targets: no flags, keycaps, skin tones, ZWJ sequences or duplicates."""
    data = json.loads((package / "emoji.json").read_text(encoding="utf-8"))
    keywords = json.loads((emojilib / "dist" / "emoji-en-US.json").read_text(encoding="utf-8"))
    keywords = {k.replace("\ufe0f", ""): v for k, v in keywords.items()}
    out, seen = [], set()
    for entry in sorted(data, key=lambda e: e["sort_order"]):
        if entry["category"] in SKIP_CATEGORIES or entry["subcategory"] in SKIP_SUBCATEGORIES:
            continue
        if "200D" in entry["unified"] or entry.get("obsoleted_by") or not entry.get("has_img_google"):
            continue
        image = package / "img" / "google" / "64" / entry["image"]
        kws = keywords.get(_char(entry["unified"]))
        if not image.is_file() or not kws:
            continue
        caption = _caption(kws[0])
        if _words(caption) in seen:
            continue
        seen.add(_words(caption))
        out.append({"entry": entry, "image": image, "caption": caption, "keywords": kws[1:]})
    return out


def _keyword_list(item: dict[str, Any], doc_freq: dict[str, int]) -> list[str]:
    """Keywords not already in the caption, rarest first (the most distinctive)."""
    caption_words = set(re.findall(r"[a-z0-9]+", item["caption"].lower()))
    kws: list[str] = []
    for kw in item["keywords"]:
        kw = kw.lower().replace("_", " ").strip()
        if len(kw) < 3 or not re.fullmatch(r"[a-z][a-z' -]*", kw) or kw in kws:
            continue
        if set(re.findall(r"[a-z0-9]+", kw)) <= caption_words:
            continue
        kws.append(kw)
    return sorted(kws, key=lambda k: (doc_freq.get(k, 0), kws.index(k)))


def _fresh_keywords(kws: list[str], used: set[frozenset[str]]) -> list[str]:
    """Two or three of the rarest keywords, as a set no other document's keyword query uses."""
    for size in (3, 2):
        for combo in itertools.combinations(kws[:5], size):
            if frozenset(combo) not in used:
                used.add(frozenset(combo))
                return list(combo)
    return []


def _name_query(item: dict[str, Any], captions: set[str], rng: random.Random) -> str:
    """An alternative name for the emoji (Unicode name or short name), else a natural templated query.

    An alternative that is some emoji's caption (e.g. the old Unicode name of a neighbour) is skipped.
    """
    entry, caption = item["entry"], item["caption"]
    alternatives = [entry["name"].lower()] + [s.replace("_", " ") for s in entry["short_names"]]
    for alt in alternatives:
        if _words(alt) not in captions and re.fullmatch(r"[a-z][a-z' -]{2,}", alt):
            return alt
    return rng.choice(("{} emoji", "emoji of a {}", "{} icon", "a picture of {}")).format(caption)


def _emoji_query_image(src: Path, rng: random.Random) -> Image.Image:
    """A lightly transformed copy: smaller, rotated a little, shifted, on a plain background (no flips)."""
    icon = Image.open(src).convert("RGBA")
    size = rng.choice((40, 48, 56))
    icon = icon.resize((size, size), Image.Resampling.LANCZOS)
    icon = icon.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC, expand=False)
    canvas = Image.new("RGB", (64, 64), rng.choice(BACKGROUNDS))
    dx, dy = rng.randint(0, 64 - size), rng.randint(0, 64 - size)
    canvas.paste(icon, (dx, dy), icon)
    return canvas


def _photo_images(raw: bytes, rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """Document image (128 px) and query image (a random 70-85 % crop at 96 px) of one photo."""
    image = Image.open(io.BytesIO(raw))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")
    doc = image.copy()
    doc.thumbnail((128, 128), Image.Resampling.LANCZOS)
    w, h = image.size
    frac = rng.uniform(0.70, 0.85)
    cw, ch = int(w * frac), int(h * frac)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    query = image.crop((x, y, x + cw, y + ch))
    query.thumbnail((96, 96), Image.Resampling.LANCZOS)
    return doc, query


def _queries(doc_id: str, texts: list[str], hint: str, qimage: str, instruction: str) -> list[dict]:
    """Text-only queries (one per text), one image-only query and one text+image query for a document."""
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        rows.append({"id": f"q-{doc_id}-t{i}", "text": text, "positives": [doc_id], "meta": {"kind": "text"}})
    rows.append({"id": f"q-{doc_id}-i", "image": qimage, "positives": [doc_id], "meta": {"kind": "image"}})
    rows.append(
        {
            "id": f"q-{doc_id}-ti",
            "text": hint,
            "image": qimage,
            "instruction": instruction,
            "positives": [doc_id],
            "meta": {"kind": "text+image"},
        }
    )
    return rows


def build(
    package: Path,
    emojilib: Path,
    wheel: Path,
    out: Path,
    seed: int,
    n_emoji: int,
    unimodal_frac: float,
    heldout_frac: float,
) -> dict[str, Any]:
    """Write corpus.jsonl, queries_{train,heldout}.jsonl, images/ and query_images/ under `out`."""
    rng = random.Random(seed)
    stage = out / ".build-tmp"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "images").mkdir(parents=True)
    (stage / "query_images").mkdir()

    candidates = load_emoji(package, emojilib)
    if len(candidates) < n_emoji:
        raise SystemExit(f"only {len(candidates)} usable emoji, asked for {n_emoji}")
    chosen = sorted(rng.sample(range(len(candidates)), n_emoji))
    emoji = [candidates[i] for i in chosen]
    captions = {_words(c["caption"]) for c in candidates}
    used_keyword_sets: set[frozenset[str]] = set()
    doc_freq: dict[str, int] = {}
    for item in emoji:
        for kw in {k.lower().replace("_", " ") for k in item["keywords"]}:
            doc_freq[kw] = doc_freq.get(kw, 0) + 1

    docs: list[dict[str, Any]] = []
    queries: dict[str, list[dict[str, Any]]] = {}
    n_uni = int(round(n_emoji * unimodal_frac))
    modality_order = rng.sample(range(n_emoji), 2 * n_uni)
    text_only, image_only = set(modality_order[:n_uni]), set(modality_order[n_uni:])
    for idx, item in enumerate(emoji):
        entry = item["entry"]
        code = entry["unified"].lower()
        doc_id = f"emoji-{code}"
        doc: dict[str, Any] = {"id": doc_id}
        if idx not in image_only:
            doc["text"] = item["caption"]
        if idx not in text_only:
            doc["image"] = f"images/{code}.png"
            shutil.copyfile(item["image"], stage / doc["image"])
        doc["meta"] = {"category": entry["category"], "subcategory": entry["subcategory"], "source": "emoji"}
        docs.append(doc)
        qimage = f"query_images/{code}.jpg"
        _emoji_query_image(item["image"], rng).save(stage / qimage, "JPEG", quality=85)
        kws = _keyword_list(item, doc_freq)
        texts = [_name_query(item, captions, rng)]
        picked = _fresh_keywords(kws, used_keyword_sets)
        if picked:
            rng.shuffle(picked)
            texts.append(", ".join(picked))
        texts = [t for i, t in enumerate(texts) if t != item["caption"] and t not in texts[:i]]
        hints = [k for k in kws if _words(k) not in captions]  # a hint must not name another emoji
        hint = hints[0] if hints else entry["subcategory"].replace("-", " ")
        queries[doc_id] = _queries(doc_id, texts, hint, qimage, rng.choice(EMOJI_INSTRUCTIONS))

    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(PHOTOS):
            caption, subcategory, texts, hint = PHOTOS[name]
            stem = name.rsplit(".", 1)[0].replace("_", "-")
            doc_id = f"photo-{stem}"
            doc_img, q_img = _photo_images(zf.read(f"skimage/data/{name}"), rng)
            doc_img.save(stage / "images" / f"{doc_id}.jpg", "JPEG", quality=85)
            q_img.save(stage / "query_images" / f"{doc_id}.jpg", "JPEG", quality=85)
            docs.append(
                {
                    "id": doc_id,
                    "text": caption,
                    "image": f"images/{doc_id}.jpg",
                    "meta": {"category": "Photos", "subcategory": subcategory, "source": "photo"},
                }
            )
            queries[doc_id] = _queries(
                doc_id, list(texts), hint, f"query_images/{doc_id}.jpg", rng.choice(INSTRUCTIONS)
            )

    rng.shuffle(docs)  # a mixed order, so that any prefix (e.g. a quick demo subset) spans all categories
    ids = [d["id"] for d in docs]
    order = ids[:]
    rng.shuffle(order)
    heldout = set(order[: int(round(len(ids) * heldout_frac))])
    split = {
        "train": [q for i in ids if i not in heldout for q in queries[i]],
        "heldout": [q for i in ids if i in heldout for q in queries[i]],
    }

    def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    write_jsonl(stage / "corpus.jsonl", docs)
    write_jsonl(stage / "queries_train.jsonl", split["train"])
    write_jsonl(stage / "queries_heldout.jsonl", split["heldout"])
    for name in ("images", "query_images"):
        if (out / name).exists():
            shutil.rmtree(out / name)
        os.replace(stage / name, out / name)
    for name in ("corpus.jsonl", "queries_train.jsonl", "queries_heldout.jsonl"):
        os.replace(stage / name, out / name)
    stage.rmdir()

    def kinds(rows: list[dict[str, Any]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["meta"]["kind"]] = counts.get(row["meta"]["kind"], 0) + 1
        return counts

    return {
        "documents": len(docs),
        "emoji": len(emoji),
        "photos": len(PHOTOS),
        "text_only_docs": sum(1 for d in docs if "image" not in d),
        "image_only_docs": sum(1 for d in docs if "text" not in d),
        "train_docs": len(ids) - len(heldout),
        "heldout_docs": len(heldout),
        "train_queries": kinds(split["train"]),
        "heldout_queries": kinds(split["heldout"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emoji-package", type=Path, required=True, help="unpacked emoji-datasource-google")
    parser.add_argument("--emojilib", type=Path, required=True, help="unpacked emojilib (keywords)")
    parser.add_argument("--skimage-wheel", type=Path, required=True, help="scikit-image wheel file")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-emoji", type=int, default=700)
    parser.add_argument(
        "--unimodal-frac",
        type=float,
        default=0.04,
        help="fraction of emoji documents made text-only, and again image-only",
    )
    parser.add_argument("--heldout-frac", type=float, default=0.2)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stats = build(
        args.emoji_package,
        args.emojilib,
        args.skimage_wheel,
        args.out,
        args.seed,
        args.n_emoji,
        args.unimodal_frac,
        args.heldout_frac,
    )
    json.dump(stats, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
