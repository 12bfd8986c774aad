"""Package mapping: `integrations/` and `trainers/` install as `ret2_plugin.integrations` and
`ret2_plugin.trainers`; `haystack_integrations/` is a PEP 420 namespace shared with Haystack's own
integrations (so pipeline YAML loads our components without allow-list changes). The example corpus
(`examples/data/`) ships as package data `ret2_plugin/example_data/`, so `ret2 demo` runs from a wheel."""

from setuptools import find_namespace_packages, find_packages, setup

ROOTS = {
    "ret2_plugin": "ret2_plugin",
    "ret2_plugin.integrations": "integrations",
    "ret2_plugin.trainers": "trainers",
}

packages: list[str] = []
for name, folder in ROOTS.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
packages += [p for p in find_namespace_packages(include=["haystack_integrations*"])]
# Data only: examples/data (ret2_plugin/examples.py finds it in a wheel or a checkout).
EXAMPLE_DATA = ["ret2_plugin.example_data", "ret2_plugin.example_data.images", "ret2_plugin.example_data.query_images"]
packages += EXAMPLE_DATA

setup(
    packages=packages,
    package_dir={
        **ROOTS,
        "haystack_integrations": "haystack_integrations",
        "ret2_plugin.example_data": "examples/data",
    },
    package_data={
        "ret2_plugin": ["py.typed"],
        "ret2_plugin.example_data": ["*.jsonl", "*.md"],
        "ret2_plugin.example_data.images": ["*.png", "*.jpg"],
        "ret2_plugin.example_data.query_images": ["*.png", "*.jpg"],
    },
)
