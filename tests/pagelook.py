"""How the page looks, measured in Chromium: target sizes, text contrast (WCAG 2) and overlap."""

from __future__ import annotations

import re

from playwright.async_api import Page

# Every visible control smaller than 44 x 44 CSS pixels, as "id-or-class: w x h".
SMALL_TARGETS = """() => [...document.querySelectorAll("button, input, select")]
  .filter((el) => el.checkVisibility() && el.type !== "hidden")
  .map((el) => [el, el.getBoundingClientRect()])
  .filter(([, box]) => box.width < 44 || box.height < 44)
  .map(([el, box]) => `${el.id || el.className}: ${Math.round(box.width)} x ${Math.round(box.height)}`)"""


# Per selector: its text colour and the background colours behind it, innermost first.
COLOURS = """(selectors) => selectors.map((selector) => {
  const el = document.querySelector(selector);
  if (!el || !el.checkVisibility()) return null;
  const behind = [];
  for (let node = el; node; node = node.parentElement) behind.push(getComputedStyle(node).backgroundColor);
  return { colour: getComputedStyle(el).color, behind };
})"""


def rgba(css: str) -> tuple[float, float, float, float]:
    """A computed colour as sRGB 0..1 and alpha: "rgb(…)", "rgba(…)" or "color(srgb … / a)"."""
    numbers = [float(x) for x in re.findall(r"[\d.]+(?:e-?\d+)?", css.split("(", 1)[1])]
    if css.startswith("color("):
        return (*numbers[:3], numbers[3] if len(numbers) > 3 else 1.0)  # type: ignore[return-value]
    r, g, b = (x / 255 for x in numbers[:3])
    return r, g, b, numbers[3] if len(numbers) > 3 else 1.0


def over(top: tuple[float, float, float, float], bottom: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b, a = top
    return (r * a + bottom[0] * (1 - a), g * a + bottom[1] * (1 - a), b * a + bottom[2] * (1 - a))


def luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2 relative luminance."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(colour: str, behind: list[str]) -> float:
    """WCAG contrast of text in `colour` over the stacked backgrounds `behind` (innermost first)."""
    background = (1.0, 1.0, 1.0)  # the canvas under everything
    for layer in reversed(behind):
        background = over(rgba(layer), background)
    text = over(rgba(colour), background)
    lighter, darker = sorted((luminance(text), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


async def contrasts(page: Page, name: str, selectors: list[str]) -> dict[str, float]:
    """Contrast of each selector's text in light and dark mode, keyed "<name> <selector> <scheme>"."""
    found: dict[str, float] = {}
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        for selector, seen in zip(selectors, await page.evaluate(COLOURS, selectors), strict=True):
            assert seen is not None, f"{selector} is not visible in state {name}"
            found[f"{name} {selector} {scheme}"] = round(contrast(seen["colour"], seen["behind"]), 2)
    await page.emulate_media(color_scheme="light")
    return found


async def box(page: Page, selector: str) -> dict[str, float]:
    found = await page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not shown"
    return found


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]
