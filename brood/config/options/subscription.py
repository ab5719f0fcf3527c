"""Options read by the subscription part: the router-side table and sign check, and the
node-side announcer. Names, aliases and defaults are uWSGI 2.0's (WIRE §2), except
``subscription-mountpoints`` (uWSGI 2.1) and the algorithms past wrr/lrc/wlrc.

The per-router ``--X-subscription-server``, ``--X-resubscribe`` and
``--X-subscription-fallback-key`` live in ``routers.py``.
"""

from brood.config.option import Option

# The balancers brood has (brood.routers.balance.ALGORITHMS); uWSGI 2.0 has wrr/lrc/wlrc.
SUBSCRIPTION_ALGOS: tuple[str, ...] = ("wrr", "rr", "lrc", "wlrc", "iphash", "p2c", "chash")


def _opt(name: str, help: str, **kw: object) -> Option:
    return Option(name, "subscription", help, **kw)  # type: ignore[arg-type]


OPTIONS: list[Option] = [
    # -- router side ---------------------------------------------------------------------
    _opt("subscription-tolerance", "seconds a subscribed node may stay silent before it "
         "is marked failed", kind="int", default=17, metavar="SECONDS"),
    _opt("subscription-dotsplit", "when a key has no node, try the next dot-based part "
         "(a.b.example.com -> .b.example.com -> .example.com)", kind="bool", default=False),
    _opt("subscription-mountpoints", "keys may carry up to N path segments (host/one/two); "
         "requests try the longest mountpoint first (uWSGI 2.1)", kind="int", default=0,
         aliases=("subscription-mountpoint",), metavar="N"),
    _opt("subscription-algo", "balancing algorithm among the nodes of a subscribed key",
         default="wrr", choices=SUBSCRIPTION_ALGOS, metavar="ALGO"),
    _opt("subscriptions-sign-check", "refuse unsigned subscriptions and check signed ones "
         "against the public keys DIR/<key>.pem (digest SHA256 when only DIR is given)",
         multi=True, metavar="[DIGEST:]DIR"),
    _opt("subscriptions-sign-check-tolerance", "maximum clock skew, in seconds, of a signed "
         "subscription's unix time", kind="int", default=86400, metavar="SECONDS"),
    _opt("subscriptions-use-credentials", "read SCM_CREDENTIALS on unix subscription "
         "sockets: stats then show the node's pid/uid/gid", kind="bool", default=False),
    _opt("subscriptions-sign-skip-uid", "with --subscriptions-use-credentials, accept "
         "packets a unix subscription socket receives from this uid (number or user name) "
         "without checking their signature", multi=True, metavar="UID"),
    # -- node side (announcer) -----------------------------------------------------------
    _opt("subscribe-to", "announce this instance: SERVER:KEY[,MODIFIER1[,DIGEST:KEYFILE]], "
         "[ADDRESS=]SERVER:KEY, or SERVER:@FILE", multi=True,
         aliases=("subscribe", "st"), metavar="SERVER:KEY"),
    _opt("subscribe2", "announce with key=value pairs: server, key, addr, socket, weight, "
         "modifier1, modifier2, sign, check, sni_key, sni_crt, sni_ca, backup, algo",
         multi=True, metavar="KEY=VALUE,..."),
    _opt("subscribe-freq", "send an announce every N master cycles (about N seconds)",
         kind="int", default=10, metavar="N"),
    _opt("weight", "weight announced for this instance (0 on the wire means 1)",
         kind="int", default=0, metavar="N"),
    _opt("auto-weight", "announce processes x cores as the weight", kind="bool",
         default=False, extra={"value_follows": True}),
    _opt("unsubscribe-on-graceful-reload", "send unsubscribes on a graceful reload too",
         kind="bool", default=False),
    _opt("start-unsubscribed", "configure subscriptions but send none until the master "
         "FIFO 'S' command unblocks them", kind="bool", default=False),
    _opt("subscription-notify-socket", "ask routers to acknowledge new subscriptions to this "
         "unix datagram socket", metavar="PATH"),
    _opt("subscribe-with-modifier1", "announce this modifier1 in every subscription",
         kind="int", metavar="N"),
]
