"""Ground-truth marketing worlds: journeys and weekly aggregates from one causal process.

A :class:`World` describes channels with weekly spend, how spend becomes touches, how touches
cause conversions, and who the customers are. :func:`simulate` draws one realisation of it:

* **Spend.** Each channel's weekly spend varies around its level (log-normal, with a share
  ``common_spend`` of the variation shared by all channels, and a yearly wave ``season``).
* **Touches.** A channel's touch volume in a week follows its spend through carryover
  (geometric adstock of spend over the level) and saturation (``x (1 + h) / (x + h)``, 1 at
  the usual level, ``h`` the half-saturation point). A person's window of activity is
  ``journey_days`` long on average; their number of touches from a channel is Poisson with mean
  ``touches`` times the channel's volume in the week of the window's middle, times the person's
  intent to the power ``targeting`` (retargeting reaches people who were going to buy anyway).
  Touch times fall in the window by the channel's funnel ``stage`` (upper: early, lower: late).
* **Conversions.** Each unit (a person, or a B2B account with all its contacts) converts at the
  end of its window with probability ``1 - exp(-(h0 + sum of touch effects))``: a baseline
  hazard ``h0`` (intent times ``baseline``) plus, per touch, the channel's ``effect`` decayed by
  its age at the decision (``exp(-age / recency_days)``) and weighted by its position in the
  window (``early`` at the start, 1 at the end). This is the independent-exposure
  (complementary log-log) model: every touch has its own chance to cause the conversion.
* **Harvest.** A channel with ``harvest > 0`` also appears, with that probability, as the last
  touch just before a conversion (the brand search or direct visit of someone who has already
  decided). Those touches are caused by the conversion, not the other way round.
* **Revenue** per converting unit is log-normal around ``value``.
* **B2B** (``contacts > 0``): accounts have ``1 + Poisson(contacts)`` contacts sharing one long
  window; the account converts on the pooled exposure of all its contacts; lead-created and
  opportunity-created milestones mark its journey.
* **Markov worlds** (``markov`` given) replace touches and conversions by a first-order Markov
  chain over channels with absorbing conversion and null states, so that the Markov model's
  assumption holds exactly. Switching a channel off sends whoever would step onto it to null.

**The truth** is counterfactual: switching a channel off means zero spend for the whole period,
so its touches (and only its touches: everything else is kept with common random numbers)
disappear. The conversion probability of every unit is then recomputed exactly; the truth is its
expectation over each unit's conversion coin, so it carries no coin-flip noise. From the game
``v(S)`` = expected conversions (or revenue) with only the channels in ``S`` switched on, for
all ``2^n`` channel sets: a channel's incremental conversions ``v(all) - v(all - c)``, its Shapley
value of the game ``v - v({})`` (the credit that sums to the incremental conversions), and its
true ROAS, incremental revenue over spend (the counterfactual the ROAS models estimate).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine._atomic import atomic_path
from engine.errors import EngineError

#: Beta distribution of a touch's position in the window, by funnel stage.
STAGES = {"upper": (1.2, 3.0), "middle": (2.0, 2.0), "lower": (3.0, 1.2)}
#: Truth is computed over all 2^n channel sets; more channels than this is refused.
MAX_CHANNELS = 16
_CHUNK = 1 << 16  # units per block when evaluating the game


@dataclass(frozen=True)
class Channel:
    """One marketing channel of a :class:`World`.

    Parameters
    ----------
    name : str
    spend : float
        Mean weekly spend per 10,000 persons (a world's spend grows with its population, so
        its ROAS does not depend on how many persons are simulated).
    spend_sd : float
        Log-scale standard deviation of weekly spend around the level.
    touches : float
        Expected touches per person (contact) over a window at the usual spend level.
    half : float
        Half-saturation point of touch volume, in units of the usual spend level.
    carryover : float
        Geometric adstock retention of spend into touch volume (0: none).
    effect : float
        Conversion hazard a fresh touch adds (0: a channel that does nothing).
    recency_days : float or None
        The effect decays as ``exp(-age / recency_days)`` with the touch's age at the decision
        (None: no decay).
    stage : {"upper", "middle", "lower"}
        Where in the window its touches fall.
    early : float
        Position effect: a touch at the very start of the window has ``early`` times the
        effect, falling linearly to 1 times at its end (1: position does not matter; above 1:
        an opener, like an upper-funnel channel; below 1: a closer).
    targeting : float
        Touch rate proportional to ``intent ** targeting`` (0: everyone alike; retargeting 2).
    harvest : float
        Probability that a converting unit's last touch is this channel, caused by the
        conversion (brand search, direct).
    """

    name: str
    spend: float = 1000.0
    spend_sd: float = 0.3
    touches: float = 1.0
    half: float = 1.0
    carryover: float = 0.3
    effect: float = 0.05
    recency_days: float | None = None
    stage: str = "middle"
    early: float = 1.0
    targeting: float = 0.0
    harvest: float = 0.0

    def check(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise EngineError(f"world: channel name must be a non-empty string, not "
                              f"{self.name!r}")
        if self.stage not in STAGES:
            raise EngineError(f"world: channel {self.name!r} stage must be one of "
                              f"{sorted(STAGES)}, not {self.stage!r}")
        for key in ("spend", "spend_sd", "touches", "effect", "targeting", "early"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise EngineError(f"world: channel {self.name!r} {key} must be a finite number "
                                  f">= 0, not {value!r}")
        if not self.half > 0:
            raise EngineError(f"world: channel {self.name!r} half must be > 0")
        if not 0 <= self.carryover < 1 or not 0 <= self.harvest <= 1:
            raise EngineError(f"world: channel {self.name!r} carryover must be in [0, 1) and "
                              "harvest in [0, 1]")
        if self.recency_days is not None and not self.recency_days > 0:
            raise EngineError(f"world: channel {self.name!r} recency_days must be > 0 or None")


@dataclass(frozen=True)
class Markov:
    """A first-order Markov world: ``start[c]`` the first channel's probabilities and
    ``transitions[c]`` the next step's probabilities over the channels, then conversion, then
    null (each row sums to 1); ``step_days`` the mean time between touches."""

    start: tuple
    transitions: tuple
    step_days: float = 2.0
    max_steps: int = 60


@dataclass(frozen=True)
class World:
    """Every parameter of a simulated world (``world.json`` holds exactly these).

    Parameters
    ----------
    channels : tuple of Channel
    persons : int
        People (contacts in a B2B world).
    weeks : int
        Length of the period.
    start : str
        First day (a Monday is usual).
    baseline : float
        Probability that an average-intent unit converts without any touch.
    intent_sd : float
        Log-scale spread of intent across units (it scales the baseline hazard).
    journey_days : float
        Mean length of a unit's window of activity.
    value, value_sd : float
        Mean revenue per conversion and its log-scale spread.
    common_spend : float
        Share (0 to 1) of weekly spend variation common to all channels.
    season : float
        Amplitude of the yearly wave in every channel's spend.
    contacts : float
        B2B: mean extra contacts per account (0: no accounts).
    markov : Markov, optional
        Makes this a first-order Markov world (channel effects and stages are then unused;
        spend is the channel's cost per touch times its touches: it follows the touches
        instead of causing them, so a channel is switched off in the chain, not by zero spend).
    seed : int
    name : str
    description : str
    """

    channels: tuple
    persons: int = 10_000
    weeks: int = 52
    start: str = "2024-01-01"
    baseline: float = 0.02
    intent_sd: float = 0.5
    journey_days: float = 28.0
    value: float = 100.0
    value_sd: float = 0.5
    common_spend: float = 0.0
    season: float = 0.15
    contacts: float = 0.0
    markov: Markov | None = None
    seed: int = 0
    name: str = "custom"
    description: str = ""

    def __post_init__(self):
        channels = tuple(c if isinstance(c, Channel) else Channel(**c) for c in self.channels)
        object.__setattr__(self, "channels", channels)
        if isinstance(self.markov, dict):
            object.__setattr__(self, "markov", Markov(**self.markov))
        self.check()

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def check(self) -> None:
        if not 1 <= len(self.channels) <= MAX_CHANNELS:
            raise EngineError(f"world: between 1 and {MAX_CHANNELS} channels, not "
                              f"{len(self.channels)}")
        for channel in self.channels:
            channel.check()
        names = self.channel_names
        if len(set(names)) != len(names):
            raise EngineError("world: channel names must be distinct")
        if not (isinstance(self.persons, (int, np.integer)) and self.persons >= 1):
            raise EngineError(f"world: persons must be a positive integer, not {self.persons!r}")
        if not (isinstance(self.weeks, (int, np.integer)) and self.weeks >= 2):
            raise EngineError(f"world: weeks must be an integer >= 2, not {self.weeks!r}")
        if not 0 <= self.baseline < 1:
            raise EngineError("world: baseline must be a probability below 1")
        if not 0 < self.journey_days < 7 * self.weeks:
            raise EngineError("world: journey_days must be positive and shorter than the period")
        for key in ("intent_sd", "value", "value_sd", "contacts"):
            if not (np.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise EngineError(f"world: {key} must be a finite number >= 0")
        if not 0 <= self.season < 1:
            raise EngineError("world: season must be in [0, 1)")
        if not 0 <= self.common_spend <= 1:
            raise EngineError("world: common_spend must be between 0 and 1")
        if self.markov is not None:
            n = len(self.channels)
            start = np.asarray(self.markov.start, dtype=float)
            moves = np.asarray(self.markov.transitions, dtype=float)
            if start.shape != (n,) or moves.shape != (n, n + 2):
                raise EngineError(f"world: a Markov world needs start of {n} probabilities and "
                                  f"transitions of shape ({n}, {n + 2})")
            if (start < 0).any() or (moves < 0).any() or not np.isclose(start.sum(), 1) or \
                    not np.allclose(moves.sum(axis=1), 1):
                raise EngineError("world: Markov start and transition rows must be "
                                  "probabilities summing to 1")
            if self.contacts:
                raise EngineError("world: a Markov world has no B2B accounts")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "World":
        data = dict(data)
        data["channels"] = tuple(Channel(**c) for c in data["channels"])
        if data.get("markov") is not None:
            m = dict(data["markov"])
            m["start"] = tuple(m["start"])
            m["transitions"] = tuple(tuple(r) for r in m["transitions"])
            data["markov"] = Markov(**m)
        return cls(**data)

    def replace(self, **changes) -> "World":
        return dataclasses.replace(self, **changes)


@dataclass
class Simulation:
    """One realisation of a :class:`World`.

    Attributes
    ----------
    world : World
    events : pandas.DataFrame
        The touchpoint log: ``person_id, timestamp, channel, event_type, revenue`` (plus
        ``account_id`` in a B2B world); ``event_type`` is ``touch``, ``conversion``, ``lead``
        or ``opportunity``. :func:`engine.read_events` reads it.
    weekly : pandas.DataFrame
        ``date`` (week start), spend per channel (one column each), ``conversions``,
        ``revenue`` (by the week of the conversion).
    truth : pandas.DataFrame
        One row per channel: ``channel, incremental_conversions, incremental_value,
        shapley_conversions, shapley_value, roas, spend, touches``.
    summary : dict
        ``conversions`` and ``revenue`` (realised), ``expected_conversions`` and
        ``baseline_conversions`` (expected with every channel on and with none), their value
        counterparts, ``units``.
    """

    world: World
    events: pd.DataFrame
    weekly: pd.DataFrame
    truth: pd.DataFrame
    summary: dict = field(default_factory=dict)

    @property
    def account(self) -> str | None:
        return "account_id" if "account_id" in self.events.columns else None

    def journeys(self, **options):
        """The journeys :func:`engine.read_events` builds from the event log (no lookback
        limit unless given; accounts rolled up in a B2B world)."""
        from engine.ingest.events import read_events

        options.setdefault("lookback_days", None)
        if self.account:
            options.setdefault("account", self.account)
        return read_events(self.events, **options)

    def save(self, directory) -> Path:
        """Write ``events.parquet``, ``weekly.csv``, ``truth.csv`` and ``world.json``.

        Each goes to a temporary file, renamed into place once all four are written: a failure
        leaves no partial file, and the files of an earlier save as they were.
        """
        out = Path(directory)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"{out}: cannot create the folder ({exc.strerror or exc})") \
                from None
        record = json.dumps({"world": self.world.to_dict(), "summary": self.summary}, indent=2,
                            default=float)
        with contextlib.ExitStack() as stack:
            def partial(name: str) -> Path:
                return stack.enter_context(atomic_path(out / name))

            self.events.to_parquet(partial("events.parquet"), index=False)
            self.weekly.to_csv(partial("weekly.csv"), index=False)
            self.truth.to_csv(partial("truth.csv"), index=False)
            partial("world.json").write_text(record)
        return out


def load_world(path) -> World:
    """The :class:`World` recorded in ``world.json`` (or a directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "world.json"
    try:
        record = json.loads(path.read_text())
        return World.from_dict(record.get("world", record))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EngineError(f"{path}: not a world description ({exc})") from None


# -- the simulation ------------------------------------------------------------------------------

def simulate(world: World, *, persons: int | None = None, seed: int | None = None) -> Simulation:
    """Draw one realisation of ``world`` (``persons`` and ``seed`` override the world's).

    Examples
    --------
    >>> from engine.simulate import scenario
    >>> sim = simulate(scenario("null_channel", persons=2000, seed=1))
    >>> sorted(sim.truth.columns)[:3], float(sim.truth.set_index("channel").loc[
    ...     "retargeting", "incremental_conversions"])
    (['channel', 'incremental_conversions', 'incremental_value'], 0.0)
    """
    changes = {k: v for k, v in {"persons": persons, "seed": seed}.items() if v is not None}
    world = world.replace(**changes) if changes else world
    streams = np.random.default_rng(world.seed).spawn(8)
    spend = _spend(world, streams[0])
    if world.markov is not None:
        units, touches, game = _markov_world(world, spend, streams[1:])
        spend = touches.pop("spend")
    else:
        units, touches, game = _exposure_world(world, spend, streams[1:])
    return _assemble(world, spend, units, touches, game)


def _spend(world: World, rng) -> np.ndarray:
    """Weekly spend ``(weeks, channels)``."""
    n = len(world.channels)
    level = np.array([c.spend for c in world.channels]) * world.persons / 10_000
    sd = np.array([c.spend_sd for c in world.channels])
    shared = rng.standard_normal((world.weeks, 1))
    own = rng.standard_normal((world.weeks, n))
    z = np.sqrt(world.common_spend) * shared + np.sqrt(1 - world.common_spend) * own
    season = 1 + world.season * np.sin(2 * np.pi * np.arange(world.weeks) * 7 / 365.25)
    return level * np.exp(sd * z - sd ** 2 / 2) * season[:, None]


def _volume(world: World, spend: np.ndarray) -> np.ndarray:
    """Touch volume per week relative to the usual: adstock then saturation of spend."""
    level = np.array([max(c.spend, 1e-12) for c in world.channels]) * world.persons / 10_000
    retain = np.array([c.carryover for c in world.channels])
    half = np.array([c.half for c in world.channels])
    x = spend / level
    stock = np.empty_like(x)
    carried = x[0]  # spend before the period was like its first week
    for week in range(len(x)):  # weeks, not people: a few hundred steps at most
        carried = retain * carried + (1 - retain) * x[week]
        stock[week] = carried
    return stock * (1 + half) / (stock + half)


def _intent(world: World, n: int, rng) -> np.ndarray:
    sd = world.intent_sd
    return np.exp(sd * rng.standard_normal(n) - sd ** 2 / 2)


def _exposure_world(world: World, spend: np.ndarray, streams):
    channels = world.channels
    n_ch = len(channels)
    days = 7 * world.weeks
    r_units, r_touch, _, r_coin, r_harvest, r_value, r_b2b = streams[:7]
    volume = _volume(world, spend)

    # Units (people, or accounts holding contacts) and their windows.
    b2b = world.contacts > 0
    if b2b:
        size = 1 + r_units.poisson(world.contacts, world.persons)  # enough accounts for sure
        bounds = np.cumsum(size)
        n_units = int(np.searchsorted(bounds, world.persons) + 1)
        size = size[:n_units]
        size[-1] -= bounds[n_units - 1] - world.persons
        contact_unit = np.repeat(np.arange(n_units), size)
    else:
        n_units = world.persons
        contact_unit = np.arange(n_units)
    length = np.minimum(world.journey_days * r_units.gamma(2.0, 0.5, n_units), days - 1.0)
    length = np.maximum(length, 0.5)
    begin = r_units.random(n_units) * (days - length)
    decide = begin + length
    intent = _intent(world, n_units, r_units)
    h0 = -np.log1p(-world.baseline) * intent
    middle_week = np.minimum(((begin + length / 2) // 7).astype(np.int64), world.weeks - 1)

    # Touches per contact and channel; each channel draws from its own stream, so a world
    # with one channel switched off re-simulates every other channel's touches exactly.
    n_contacts = len(contact_unit)
    unit_intent = intent[contact_unit]
    contact_week = middle_week[contact_unit]
    shape = np.array([STAGES[ch.stage] for ch in channels])
    parts = []
    for c, (ch, rng) in enumerate(zip(channels, r_touch.spawn(n_ch))):  # channels, not people
        norm = np.exp(ch.targeting * (ch.targeting - 1) * world.intent_sd ** 2 / 2)
        expected = ch.touches * volume[contact_week, c] * unit_intent ** ch.targeting / norm
        count = rng.poisson(expected)
        who = np.repeat(np.arange(n_contacts), count)
        parts.append((who, np.full(len(who), c), rng.beta(*shape[c], len(who))))
    contact, code, where = (np.concatenate(x) for x in zip(*parts))
    unit = contact_unit[contact]
    when = begin[unit] + where * length[unit]
    age = decide[unit] - when
    effect = np.array([ch.effect for ch in channels])
    memory = np.array([np.inf if ch.recency_days is None else ch.recency_days
                       for ch in channels])
    early = np.array([ch.early for ch in channels])
    weight = effect[code] * np.exp(-age / memory[code]) * (early[code]
                                                            + (1.0 - early[code]) * where)
    exposure = np.bincount(unit * n_ch + code, weights=weight,
                           minlength=n_units * n_ch).reshape(n_units, n_ch)

    # Conversions, revenue and the touches they cause.
    p_all = -np.expm1(-(h0 + exposure.sum(axis=1)))
    coin = r_coin.random(n_units)
    converted = coin < p_all
    value = world.value * np.exp(world.value_sd * r_value.standard_normal(n_units)
                                 - world.value_sd ** 2 / 2)
    buyer = np.searchsorted(contact_unit, np.arange(n_units))  # first contact of each unit
    harvest = np.array([ch.harvest for ch in channels])
    extra_contact, extra_code, extra_when = [], [], []
    if (harvest > 0).any():
        draws = r_harvest.random((n_units, n_ch))
        gap = r_harvest.exponential(30.0 / 1440.0, (n_units, n_ch)) + 1.0 / 1440.0
        hit = (draws < harvest) & converted[:, None]
        u, c = np.nonzero(hit)
        extra_contact.append(buyer[u])
        extra_code.append(c)
        extra_when.append(decide[u] - np.minimum(gap[u, c], 0.5 * length[u]))
    touches = {
        "contact": np.concatenate([contact, *extra_contact]),
        "code": np.concatenate([code, *extra_code]),
        "when": np.concatenate([when, *extra_when]),
    }
    units = {"decide": decide, "converted": converted, "value": value, "buyer": buyer,
             "contact_unit": contact_unit, "begin": begin}
    if b2b:
        units["milestones"] = _milestones(touches, contact_unit, converted, n_units, r_b2b)
    game = _exposure_game(h0, exposure, value)
    return units, touches, game


def _milestones(touches: dict, contact_unit, converted, n_units: int, rng) -> dict:
    """Lead and opportunity events of B2B accounts: at a third and two thirds of the account's
    touches for a won account; for an account that is not won, a lead with probability 0.5 and
    then an opportunity with probability 0.4, at the same places."""
    unit = contact_unit[touches["contact"]]
    order = np.lexsort((touches["when"], unit))
    sorted_unit = unit[order]
    first = np.searchsorted(sorted_unit, np.arange(n_units))
    count = np.bincount(sorted_unit, minlength=n_units)
    has = count > 0
    lead = has & (converted | (rng.random(n_units) < 0.5))
    opportunity = lead & (converted | (rng.random(n_units) < 0.4))
    out = {}
    for name, chosen, fraction in (("lead", lead, 1 / 3), ("opportunity", opportunity, 2 / 3)):
        u = np.flatnonzero(chosen)
        at = order[first[u] + np.minimum((count[u] * fraction).astype(np.int64), count[u] - 1)]
        out[name] = (touches["contact"][at], touches["when"][at] + 1.0 / 1440.0)
    return out


def _exposure_game(h0: np.ndarray, exposure: np.ndarray, value: np.ndarray):
    """``v(S)`` for every channel set (row = bit mask): expected conversions and revenue."""
    n_ch = exposure.shape[1]
    masks = ((np.arange(1 << n_ch)[:, None] >> np.arange(n_ch)) & 1).astype(float)
    conversions = np.zeros(1 << n_ch)
    revenue = np.zeros(1 << n_ch)
    for lo in range(0, len(h0), _CHUNK):  # blocks of units, to bound memory
        hi = lo + _CHUNK
        survive = np.exp(-h0[lo:hi, None] - exposure[lo:hi] @ masks.T)
        conversions += (1.0 - survive).sum(axis=0)
        revenue += value[lo:hi] @ (1.0 - survive)
    return conversions, revenue


def _markov_world(world: World, spend_plan: np.ndarray, streams):
    """Walks of a first-order chain; spend is each channel's cost per touch times its touches
    (``spend_plan`` gives the cost level)."""
    r_start, r_walk, r_time, _, _, r_value = streams[:6]
    n_ch = len(world.channels)
    chain = world.markov
    start = np.asarray(chain.start, dtype=float)
    moves = np.asarray(chain.transitions, dtype=float)
    n = world.persons
    days = 7 * world.weeks
    state = np.searchsorted(np.cumsum(start), r_start.random(n) * start.sum(), side="right")
    state = np.minimum(state, n_ch - 1)
    cumulative = np.cumsum(moves, axis=1)
    walkers = np.arange(n)
    person_steps, code_steps = [walkers], [state]
    ended = np.full(n, -1)  # n_ch: converted, n_ch + 1: null
    active = walkers
    for _ in range(chain.max_steps - 1):  # steps, not people
        u = r_walk.random(len(active))
        nxt = (u[:, None] >= cumulative[state]).sum(axis=1)
        nxt = np.minimum(nxt, n_ch + 1)
        stop = nxt >= n_ch
        ended[active[stop]] = nxt[stop]
        active, state = active[~stop], nxt[~stop]
        if not len(active):
            break
        person_steps.append(active)
        code_steps.append(state)
    ended[active] = n_ch + 1  # walks still going after max_steps end in null
    person = np.concatenate(person_steps)
    code = np.concatenate(code_steps)
    order = np.argsort(person, kind="stable")
    person, code = person[order], code[order]
    gaps = r_time.exponential(chain.step_days, len(person))
    first = np.searchsorted(person, np.arange(n))
    elapsed = np.cumsum(gaps)
    offset = elapsed - (elapsed[first] - gaps[first])[person]  # time since the person's start
    length = offset[np.r_[first[1:], len(person)] - 1] + r_time.exponential(0.1, n)
    length = np.minimum(length, days - 1.0)
    begin = r_time.random(n) * (days - length)
    when = begin[person] + np.minimum(offset, length[person] - 1.0 / 1440.0)
    decide = begin + length
    converted = ended == n_ch
    value = world.value * np.exp(world.value_sd * r_value.standard_normal(n)
                                 - world.value_sd ** 2 / 2)
    # Spend: cost per touch (the channel's spend level over its expected weekly touches).
    week = np.minimum((when // 7).astype(np.int64), world.weeks - 1)
    per_week = np.bincount(week * n_ch + code, minlength=world.weeks * n_ch).reshape(
        world.weeks, n_ch)
    level = np.array([c.spend for c in world.channels]) * world.persons / 10_000
    cost = level / np.maximum(per_week.mean(axis=0), 1e-12)
    touches = {"contact": person, "code": code, "when": when, "spend": per_week * cost}
    units = {"decide": decide, "converted": converted, "value": value, "buyer": np.arange(n),
             "contact_unit": np.arange(n), "begin": begin}
    probability = _markov_game(start, moves)
    mean_value = value.mean()
    return units, touches, (n * probability, n * mean_value * probability)


def _markov_game(start: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """Conversion probability of the chain with only the channels in ``S`` on, every ``S``
    (row = bit mask): stepping onto a channel that is off ends the walk in null."""
    n = len(start)
    out = np.zeros(1 << n)
    inner = moves[:, :n]
    for mask in range(1, 1 << n):  # 2^n small solves (n <= MAX_CHANNELS)
        on = np.flatnonzero((mask >> np.arange(n)) & 1)
        q = inner[np.ix_(on, on)]
        absorb = np.linalg.solve(np.eye(len(on)) - q, moves[on, n])
        out[mask] = start[on] @ absorb
    return out


# -- assembling the outputs ----------------------------------------------------------------------

def _assemble(world: World, spend: np.ndarray, units: dict, touches: dict, game) -> Simulation:
    from engine.models.shapley import shapley_exact

    names = world.channel_names
    n_ch = len(names)
    origin = np.datetime64(pd.Timestamp(world.start).tz_localize(None).normalize(), "s")

    def stamp(days):
        return pd.to_datetime(origin + np.round(np.asarray(days) * 86400).astype(
            "timedelta64[s]")).tz_localize("UTC")

    contact_unit = units["contact_unit"]
    converted = units["converted"]
    buyers = np.flatnonzero(converted)
    parts = [pd.DataFrame({"person_id": touches["contact"], "t": touches["when"],
                           "channel": np.asarray(names, dtype=object)[touches["code"]],
                           "event_type": "touch", "revenue": np.nan})]
    parts.append(pd.DataFrame({"person_id": units["buyer"][buyers],
                               "t": units["decide"][buyers], "channel": None,
                               "event_type": "conversion",
                               "revenue": np.round(units["value"][buyers], 2)}))
    for kind, (who, at) in units.get("milestones", {}).items():
        parts.append(pd.DataFrame({"person_id": who, "t": at, "channel": None,
                                   "event_type": kind, "revenue": np.nan}))
    events = pd.concat(parts, ignore_index=True)
    events = events.sort_values(["person_id", "t"], kind="stable", ignore_index=True)
    events.insert(1, "timestamp", stamp(events.pop("t").to_numpy()))
    if world.contacts > 0:
        events.insert(1, "account_id", contact_unit[events["person_id"].to_numpy()])

    # Weekly aggregates, by the week of each conversion.
    week = np.minimum((units["decide"][buyers] // 7).astype(np.int64), world.weeks - 1)
    revenue = np.round(units["value"][buyers], 2)
    weekly = pd.DataFrame({"date": pd.date_range(pd.Timestamp(world.start).normalize(),
                                                 periods=world.weeks, freq="7D")})
    for c, name in enumerate(names):
        weekly[name] = np.round(spend[:, c], 2)
    weekly["conversions"] = np.bincount(week, minlength=world.weeks)
    weekly["revenue"] = np.bincount(week, weights=revenue, minlength=world.weeks).round(2)

    conversions, value = game
    full = (1 << n_ch) - 1
    without = full ^ (1 << np.arange(n_ch))
    shapley = shapley_exact(np.column_stack([conversions - conversions[0],
                                             value - value[0]]))
    spent = weekly[names].to_numpy().sum(axis=0)
    truth = pd.DataFrame({
        "channel": names,
        "incremental_conversions": conversions[full] - conversions[without],
        "incremental_value": value[full] - value[without],
        "shapley_conversions": shapley[:, 0],
        "shapley_value": shapley[:, 1],
    })
    # ROAS as the ROAS models define it: the revenue lost when the channel's spend is zeroed.
    truth["roas"] = np.where(spent > 0, truth["incremental_value"] / np.where(spent > 0, spent, 1),
                             np.nan)
    truth["spend"] = spent
    truth["touches"] = np.bincount(touches["code"], minlength=n_ch)
    summary = {
        "units": len(converted),
        "persons": int(world.persons),
        "conversions": int(converted.sum()),
        "revenue": float(revenue.sum()),
        "expected_conversions": float(conversions[full]),
        "baseline_conversions": float(conversions[0]),
        "expected_revenue": float(value[full]),
        "baseline_revenue": float(value[0]),
        "touches": len(touches["code"]),
    }
    return Simulation(world=world, events=events, weekly=weekly, truth=truth, summary=summary)
