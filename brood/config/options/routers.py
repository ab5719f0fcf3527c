"""Options read by the routers part."""

from brood.config.option import Option

OPTIONS: list[Option] = []
