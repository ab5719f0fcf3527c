"""Options read by the workers part."""

from brood.config.option import Option

OPTIONS: list[Option] = []
