"""Options read by the stats part."""

from brood.config.option import Option

OPTIONS: list[Option] = []
