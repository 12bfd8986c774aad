"""The application layer: the `ret2` command, the demo, the starter model builder, the model store
(`--model` names), the HTML gallery and the train/eval commands.

It stands on top of everything else: it imports the library core (`ret2_plugin.modeling`,
`processing`, `encoder`, `items`, `index`, `indexing`, `search`, `filters`, `plugins`), the trainers
and the integrations; none of those imports it (checked by `tests/test_layering.py`).
"""
