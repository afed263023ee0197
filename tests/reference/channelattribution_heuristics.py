"""ChannelAttribution 2.2.5 on its example data: exact heuristics, Monte-Carlo Markov.

Produced with ChannelAttribution **2.2.5** (installed from the PyPI sdist
``channelattribution-2.2.5.tar.gz``) on its example path table ``Data``
(``src/cypack/data/Data.csv``, ``;``-separated; row for row the shipped
``engine/datasets/channelattribution_paths.csv``, see its SOURCE.md), loaded as the data frame
``D``, by these two calls::

    heuristic_models(D, "path", "total_conversions", var_value="total_conversion_value")
    markov_model(D, "path", "total_conversions", var_value="total_conversion_value",
                 var_null="total_null", order=1, seed=0, out_more=True)

``HEURISTICS`` holds the ``first_touch``, ``last_touch`` and ``linear_touch`` conversions and
values per channel, keyed by our model names (``first_touch``, ``last_touch`` and ``linear`` with
``per="touch"``). They are exact: compare with a tight relative tolerance.

``MARKOV_ORDER1`` holds the first-order Markov conversions and values, and
``MARKOV_ORDER1_REMOVAL_EFFECTS`` the removal effects (conversion and value). ChannelAttribution
estimates these by **Monte-Carlo** simulation of paths (``nsim_start=1e5``, ``conv_par=0.05``,
``seed=0``): an exact absorbing-chain computation lands within about 0.2-2.5 % for the large
channels (``LARGE_CHANNELS``), 4-13 % off for kappa, zeta, epsilon and gamma, and over 70 % off
for the near-empty delta and mi. Compare only with a stated tolerance, and only the large
channels.

Every number is copied with full precision (``repr`` of the float) from the CSV outputs of that
run (``derived_reference_outputs/heuristic_and_markov_order1.csv`` and
``markov_order1_removal_effects.csv`` of the data set's source folder).
"""

_FIRST_TOUCH = {
    "eta": {"conversions": 3164.0, "value": 11909.47621303163},
    "iota": {"conversions": 4606.0, "value": 19597.261276975205},
    "alpha": {"conversions": 6308.0, "value": 19121.272355798723},
    "beta": {"conversions": 2831.0, "value": 12235.5917443553},
    "theta": {"conversions": 1606.0, "value": 6652.349347446829},
    "lambda": {"conversions": 902.0, "value": 3735.602164915967},
    "kappa": {"conversions": 74.0, "value": 305.74325},
    "zeta": {"conversions": 27.0, "value": 103.004},
    "epsilon": {"conversions": 99.0, "value": 412.30124285714277},
    "gamma": {"conversions": 165.0, "value": 718.9779918300652},
    "delta": {"conversions": 1.0, "value": 6.119},
    "mi": {"conversions": 2.0, "value": 5.273},
}

_LAST_TOUCH = {
    "eta": {"conversions": 4167.0, "value": 16754.203800105723},
    "iota": {"conversions": 3355.0, "value": 13487.97427135771},
    "alpha": {"conversions": 8447.0, "value": 28414.21427436393},
    "beta": {"conversions": 989.0, "value": 3850.020987258204},
    "theta": {"conversions": 653.0, "value": 2799.091987581701},
    "lambda": {"conversions": 1207.0, "value": 5249.949985427813},
    "kappa": {"conversions": 230.0, "value": 1069.38425},
    "zeta": {"conversions": 107.0, "value": 453.26075000000003},
    "epsilon": {"conversions": 531.0, "value": 2202.612289285718},
    "gamma": {"conversions": 92.0, "value": 506.0139918300656},
    "delta": {"conversions": 5.0, "value": 10.972},
    "mi": {"conversions": 2.0, "value": 5.273},
}

_LINEAR = {
    "eta": {"conversions": 3539.9511571005655, "value": 13783.497050920105},
    "iota": {"conversions": 3857.0962210177604, "value": 15988.988995023583},
    "alpha": {"conversions": 7574.718593751173, "value": 24524.709568833507},
    "beta": {"conversions": 2083.5001445890803, "value": 8954.266716607803},
    "theta": {"conversions": 1022.8013939042183, "value": 4295.743619487193},
    "lambda": {"conversions": 1035.257572285535, "value": 4430.316169428445},
    "kappa": {"conversions": 137.96407792227836, "value": 599.7477862552665},
    "zeta": {"conversions": 136.55154046644452, "value": 539.5287630528435},
    "epsilon": {"conversions": 272.1704377204597, "value": 1106.2700652665453},
    "gamma": {"conversions": 121.04163902026706, "value": 569.4173578910572},
    "delta": {"conversions": 1.7249999999999999, "value": 4.404050000000001},
    "mi": {"conversions": 2.2222222222222223, "value": 6.081444444444444},
}

HEURISTICS = {"first_touch": _FIRST_TOUCH, "last_touch": _LAST_TOUCH, "linear": _LINEAR}

# Monte-Carlo estimates (see the module docstring): not exact.
MARKOV_ORDER1 = {
    "eta": {"conversions": 3345.782635594968, "value": 12876.968360129758},
    "iota": {"conversions": 3794.607135491854, "value": 14436.14548589749},
    "alpha": {"conversions": 5357.332439678285, "value": 18642.55889566466},
    "beta": {"conversions": 2550.1392039595794, "value": 9619.314295819415},
    "theta": {"conversions": 1974.8277995462984, "value": 7568.80390392144},
    "lambda": {"conversions": 1305.6712724273045, "value": 5069.700297474193},
    "kappa": {"conversions": 310.09692720148485, "value": 1358.6989996472505},
    "zeta": {"conversions": 346.8189317385028, "value": 1195.0600272817887},
    "epsilon": {"conversions": 624.274077129305, "value": 2688.89532799823},
    "gamma": {"conversions": 163.20890905341307, "value": 1290.4146837478866},
    "delta": {"conversions": 8.160445452670654, "value": 46.0544394237191},
    "mi": {"conversions": 4.080222726335327, "value": 10.3568702049057},
}

MARKOV_ORDER1_REMOVAL_EFFECTS = {
    "eta": {"conversions": 0.34893617021276596, "value": 0.3560905863607654},
    "iota": {"conversions": 0.39574468085106385, "value": 0.3992069691480359},
    "alpha": {"conversions": 0.5587234042553192, "value": 0.5155281540472341},
    "beta": {"conversions": 0.26595744680851063, "value": 0.26600572216924456},
    "theta": {"conversions": 0.20595744680851064, "value": 0.2093023563327197},
    "lambda": {"conversions": 0.13617021276595745, "value": 0.14019391064052758},
    "kappa": {"conversions": 0.03234042553191489, "value": 0.03757250231119613},
    "zeta": {"conversions": 0.036170212765957444, "value": 0.03304734576879836},
    "epsilon": {"conversions": 0.0651063829787234, "value": 0.07435681188549291},
    "gamma": {"conversions": 0.01702127659574468, "value": 0.03568421607736996},
    "delta": {"conversions": 0.000851063829787234, "value": 0.001273556933609118},
    "mi": {"conversions": 0.000425531914893617, "value": 0.0002864015722478679},
}

LARGE_CHANNELS = ("alpha", "eta", "iota", "theta", "lambda", "beta")
