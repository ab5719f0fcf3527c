"""Options read by the stats part: the JSON stats server uwsgitop reads."""

from brood.config.option import Option

OPTIONS: list[Option] = [
    Option("stats", "stats", "serve JSON stats on ADDR (tcp host:port or unix path)",
           aliases=("stats-server",), metavar="ADDR"),
    Option("stats-http", "stats", "answer the stats server with an HTTP response", kind="bool"),
    Option("stats-minified", "stats", "send the stats JSON without indentation", kind="bool",
           aliases=("stats-min",)),
]
