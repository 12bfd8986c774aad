"""Training: datasets, collators, losses, the loop, distributed helpers, evaluation; installed as `ret2_plugin.trainers`."""
