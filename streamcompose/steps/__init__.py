"""What workers run: stateless steps (models, routers) and stateful steps (joiners,
fallback routers). The kinds are registered in :mod:`streamcompose.kinds`."""
