"""A training put together: the rollout Agent Lightning runs, the runners, evaluation and progress."""
