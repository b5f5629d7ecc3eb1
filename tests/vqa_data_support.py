"""Small Kaggle "Fashion Product Images" folders for the VQA dataset builder and training tests.

The layout is the real one: `styles.csv` (the original 10 unquoted columns), `images/<id>.jpg`,
`styles/<id>.json` with `data.articleAttributes`. Image content follows the attributes (fill
colour = baseColour, sleeve length, stripes or checks, a fabric swatch) so that a model could in
principle learn the answers from the pixels.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

STYLES_HEADER = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
    "productDisplayName"
)

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "Navy Blue": (20, 30, 90),
    "Red": (200, 30, 30),
    "White": (240, 240, 240),
    "Black": (15, 15, 15),
    "Green": (30, 150, 60),
}
FABRIC_SHADE: dict[str, int] = {"Cotton": 230, "Polyester": 160, "Linen": 200, "Denim": 60}
FITS = ("Regular Fit", "Slim Fit")
PATTERNS = ("Solid", "Striped", "Checked")
SLEEVE_LENGTHS = ("Long Sleeves", "Short Sleeves")
SLEEVE_STYLINGS = ("Regular Sleeves", "Roll-Up Sleeves")
COLLARS = ("Spread Collar", "Button-Down Collar")
NECKS = ("Round Neck", "V-Neck")
FIRST_ID = 20000


@dataclass(frozen=True)
class FashionProduct:
    id: str
    article_type: str
    colour: str
    # data.articleAttributes as the Kaggle JSON has them ("Fabric", "Sleeve Length"...).
    attributes: Mapping[str, str]

    @property
    def name(self) -> str:
        return f"Atelier {self.colour} {self.attributes['Fabric']} {self.article_type}"

    def csv_line(self) -> str:
        return (
            f"{self.id},Men,Apparel,Topwear,{self.article_type},{self.colour},Summer,2012,"
            f"Casual,{self.name}"
        )


def fashion_products(count: int = 12, *, seed: int = 0) -> list[FashionProduct]:
    """`count` products with varied attributes, the same ones for the same `seed`."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    products: list[FashionProduct] = []
    for index in range(count):
        article_type = ("Shirts", "Tshirts")[index % 2]
        attributes = {
            "Fabric": rng.choice(list(FABRIC_SHADE)),
            "Fit": rng.choice(FITS),
            "Pattern": rng.choice(PATTERNS),
            "Sleeve Length": rng.choice(SLEEVE_LENGTHS),
            "Sleeve Styling": rng.choice(SLEEVE_STYLINGS),
        }
        # Like the real data: shirts have collars, T-shirts have necklines.
        if article_type == "Shirts":
            attributes["Collar"] = rng.choice(COLLARS)
        else:
            attributes["Neck"] = rng.choice(NECKS)
        colour = list(COLOUR_RGB)[index % len(COLOUR_RGB)]
        products.append(FashionProduct(str(FIRST_ID + index), article_type, colour, attributes))
    return products


def garment_image(product: FashionProduct, size: tuple[int, int] = (64, 64)) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, (200, 200, 205))
    draw = ImageDraw.Draw(image)
    fill = COLOUR_RGB[product.colour]
    torso = (width * 3 // 10, height // 8, width * 7 // 10, height * 15 // 16)
    draw.rectangle(torso, fill=fill)
    sleeve_end = (
        height * 7 // 8
        if product.attributes["Sleeve Length"] == "Long Sleeves"
        else height * 3 // 8
    )
    draw.rectangle((width // 10, height // 8, torso[0], sleeve_end), fill=fill)
    draw.rectangle((torso[2], height // 8, width * 9 // 10, sleeve_end), fill=fill)
    contrast = tuple(255 - channel for channel in fill)
    pattern = product.attributes["Pattern"]
    if pattern in ("Striped", "Checked"):
        for y in range(torso[1], torso[3], max(2, height // 10)):
            draw.line((torso[0], y, torso[2], y), fill=contrast)
    if pattern == "Checked":
        for x in range(torso[0], torso[2], max(2, width // 10)):
            draw.line((x, torso[1], x, torso[3]), fill=contrast)
    shade = FABRIC_SHADE[product.attributes["Fabric"]]
    draw.rectangle((0, 0, width // 8, height // 8), fill=(shade, shade, shade))
    return image


def write_image(
    path: Path, size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (90, 90, 90)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(
        path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None
    )
    return path


def write_styles_json(root: Path, product_id: str, attributes: Mapping[str, object]) -> Path:
    """styles/<id>.json shaped like Kaggle's (a notification block, then data)."""
    path = root / "styles" / f"{product_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "notification": {"code": "SUCCESS", "message": "Request successful"},
        "data": {"id": int(product_id), "articleAttributes": dict(attributes)},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def make_fashion_dataset(
    root: Path, *, products: int = 12, image_size: tuple[int, int] = (64, 64), seed: int = 0
) -> Path:
    """Write a Kaggle-layout folder into `root` (created if needed) and return `root`.

    `fashion_products(products, seed=seed)` gives the same products, for expected answers.
    """
    root.mkdir(parents=True, exist_ok=True)
    items = fashion_products(products, seed=seed)
    lines = [STYLES_HEADER, *(product.csv_line() for product in items)]
    (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "images").mkdir(exist_ok=True)
    for product in items:
        garment_image(product, image_size).save(
            root / "images" / f"{product.id}.jpg", format="JPEG"
        )
        write_styles_json(root, product.id, product.attributes)
    return root
