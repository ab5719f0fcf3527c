"""Options read by the core part."""

from brood.config.option import Option

OPTIONS: list[Option] = []
