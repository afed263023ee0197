"""Named worlds, each built to test one thing attribution methods get wrong (or right).

``scenario(name, persons=..., seed=...)`` returns the :class:`~engine.simulate.world.World`;
``SCENARIOS`` maps each name to its one-line purpose (``attribution simulate --help`` lists them).

* ``null_channel``: *retargeting* is the most frequent channel and comes late in journeys, so
  it is often the last touch; its effect is exactly zero. Presence-based credit (last touch,
  linear, Markov) gives it plenty.
* ``upper_funnel``: *video* reaches people early in their journey and has the largest,
  slowly fading effect, twice as strong when it opens the journey; *search* and *email* come
  last with small, quickly fading effects. Last touch under-credits video.
* ``harvest``: *brand_search* and *direct* are the last step of most conversions because people
  who have decided navigate through them (caused by the conversion); their own exogenous touches
  do little. *display*, *social* and *video* create the demand.
* ``collinear``: five channels whose weekly spend moves together (95 % of the variation shared):
  aggregate (media-mix) models cannot separate them; journeys still can.
* ``b2b``: accounts of 1 + Poisson(2.5) contacts, four-month cycles, lead-created and
  opportunity-created milestones; the account converts on all its contacts' touches.
* ``selection``: ``null_channel`` with retargeting aimed at people who were going to buy
  anyway (touch rate ~ intent squared): its touches now go with conversions without causing
  them, a confounder no journey data reveals. Every observational method, the incremental
  model included, credits it; the scenario measures by how much.
* ``markov_world``: a first-order Markov chain over five channels with absorbing conversion and
  null states; switching a channel off sends those who would step onto it to null. The Markov
  model's assumptions hold exactly here.
"""

from __future__ import annotations

from engine.errors import EngineError
from engine.simulate.world import Channel, Markov, World

SCENARIOS = {
    "null_channel": "a frequent, late retargeting channel with zero effect",
    "upper_funnel": "an early, strong video channel that last touch under-credits",
    "harvest": "brand search and direct harvest demand that other channels create",
    "collinear": "channels whose weekly spend moves together",
    "b2b": "accounts with several contacts, long cycles, lead and opportunity milestones",
    "markov_world": "a pure first-order Markov world where the Markov model is right",
    "selection": "the null retargeting channel aimed at people who were going to buy anyway",
}


def scenario(name: str, *, persons: int = 20_000, seed: int = 0, weeks: int = 52) -> World:
    """The named :class:`World` (see the module's documentation for what each holds).

    Examples
    --------
    >>> world = scenario("upper_funnel", persons=1000, seed=3)
    >>> world.channel_names, world.persons, world.seed
    (['video', 'social', 'search', 'email'], 1000, 3)
    """
    if name not in SCENARIOS:
        raise EngineError(f"unknown scenario {name!r}; available: {', '.join(SCENARIOS)}")
    channels, extra = _BUILDERS[name]()
    return World(channels=tuple(channels), persons=int(persons), seed=int(seed),
                 weeks=int(weeks), name=name, description=SCENARIOS[name], **extra)


def _null_channel(targeting: float = 0.0):
    return [
        Channel("search", spend=400, touches=0.8, effect=0.06, recency_days=10, stage="lower"),
        Channel("social", spend=300, touches=1.0, effect=0.04, recency_days=20),
        Channel("display", spend=250, touches=1.2, effect=0.03, recency_days=30,
                stage="upper"),
        Channel("retargeting", spend=200, touches=1.5, effect=0.0, stage="lower",
                targeting=targeting),
    ], {"baseline": 0.03, "intent_sd": 0.8}


def _selection():
    return _null_channel(targeting=2.0)


def _upper_funnel():
    return [
        Channel("video", spend=600, touches=0.8, effect=0.08, recency_days=60, stage="upper",
                carryover=0.5, early=2.0),
        Channel("social", spend=300, touches=1.0, effect=0.04, recency_days=20),
        Channel("search", spend=300, touches=0.9, effect=0.02, recency_days=5, stage="lower"),
        Channel("email", spend=50, touches=1.2, effect=0.01, recency_days=3, stage="lower"),
    ], {"baseline": 0.02}


def _harvest():
    return [
        Channel("display", spend=300, touches=1.2, effect=0.05, recency_days=30,
                stage="upper"),
        Channel("social", spend=300, touches=1.0, effect=0.05, recency_days=20),
        Channel("video", spend=500, touches=0.6, effect=0.08, recency_days=45, stage="upper"),
        Channel("brand_search", spend=150, touches=0.3, effect=0.01, recency_days=3,
                stage="lower", harvest=0.6),
        Channel("direct", spend=0.0, spend_sd=0.0, touches=0.0, effect=0.0, stage="lower",
                harvest=0.3),
    ], {"baseline": 0.02}


def _collinear():
    return [
        Channel(name, spend=spend, touches=1.0, effect=effect, recency_days=days, stage=stage,
                spend_sd=0.4)
        for name, spend, effect, days, stage in [
            ("search", 400, 0.05, 10, "lower"), ("social", 300, 0.03, 20, "middle"),
            ("display", 250, 0.02, 30, "upper"), ("video", 500, 0.06, 45, "upper"),
            ("affiliate", 150, 0.01, 7, "lower")]
    ], {"baseline": 0.02, "common_spend": 0.95}


def _b2b():
    return [
        Channel("webinar", spend=9000, touches=0.4, effect=0.10, recency_days=90,
                stage="upper"),
        Channel("linkedin", spend=12000, touches=1.0, effect=0.03, recency_days=60,
                stage="upper"),
        Channel("events", spend=18000, touches=0.2, effect=0.15, recency_days=120),
        Channel("search", spend=7500, touches=0.8, effect=0.02, recency_days=20,
                stage="lower"),
        Channel("email", spend=1500, touches=1.5, effect=0.005, recency_days=10, stage="lower"),
    ], {"baseline": 0.03, "contacts": 2.5, "journey_days": 120.0, "value": 20_000.0,
        "value_sd": 0.8}


def _markov_world():
    names = ["search", "social", "display", "email", "video"]
    # Rows: next channel (search, social, display, email, video), then conversion, then null.
    moves = (
        (0.10, 0.05, 0.05, 0.10, 0.02, 0.18, 0.50),
        (0.25, 0.10, 0.05, 0.05, 0.05, 0.05, 0.45),
        (0.20, 0.15, 0.10, 0.05, 0.05, 0.03, 0.42),
        (0.15, 0.05, 0.02, 0.15, 0.02, 0.11, 0.50),
        (0.30, 0.10, 0.10, 0.05, 0.05, 0.06, 0.34),
    )
    start = (0.25, 0.25, 0.25, 0.10, 0.15)
    channels = [Channel(n, spend=s) for n, s in zip(names, [400, 300, 250, 50, 500])]
    return channels, {"markov": Markov(start=start, transitions=moves)}


_BUILDERS = {"null_channel": _null_channel, "upper_funnel": _upper_funnel,
             "harvest": _harvest, "collinear": _collinear, "b2b": _b2b,
             "markov_world": _markov_world, "selection": _selection}
