"""Package mapping: `integrations/` and `trainers/` install as `ret2_plugin.integrations` and
`ret2_plugin.trainers`; `haystack_integrations/` is a PEP 420 namespace shared with Haystack's own
integrations (so pipeline YAML loads our components without allow-list changes)."""

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

setup(
    packages=packages,
    package_dir={**ROOTS, "haystack_integrations": "haystack_integrations"},
    package_data={"ret2_plugin": ["py.typed"]},
)
