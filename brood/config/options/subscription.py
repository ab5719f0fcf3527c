"""Options read by the subscription part."""

from brood.config.option import Option

OPTIONS: list[Option] = []
