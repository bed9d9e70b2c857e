"""Plotly figure builders. Pure functions of tables and numbers: no Streamlit, so tests can count traces and sum
bars, and the pages just pass the figures to st.plotly_chart.

Each page's builders live in their own section below; append yours under a `# --- <page> ---` header.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from core.browse import (
    GENDER_NAMES,
    MAX_AGE,
    UNKNOWN,
    age_group_order,
    gender_names,
    race_names,
    race_order,
)
from core.metrics import METRIC_NAMES, PER_TASK, headline

# --- explore ---

# Fixed colours per label, so "female" or "Asian" looks the same in every chart and on every dataset.
GENDER_COLORS = {"male": "#4C78A8", "female": "#E45756", UNKNOWN: "#B0B0B0"}
RACE_COLORS = {
    "White": "#4C78A8", "Black": "#F58518", "Asian": "#54A24B", "Indian": "#B279A2", "Others": "#9D755D",
    "East Asian": "#54A24B", "Southeast Asian": "#88D27A", "Latino_Hispanic": "#EECA3B",
    "Middle Eastern": "#9D755D", UNKNOWN: "#B0B0B0",
}
COLOR_BY = ("gender", "race")


def _layout(figure: go.Figure, title: str, **extra) -> go.Figure:
    figure.update_layout(**{"title": title, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 320, **extra})
    return figure


def _names_and_colors(table: pd.DataFrame, color_by: str) -> tuple[pd.Series, list[str], dict[str, str]]:
    if color_by == "gender":
        names = gender_names(table)
        return names, [g for g in GENDER_NAMES if g in set(names)], GENDER_COLORS
    if color_by == "race":
        names = race_names(table)
        return names, race_order(names), RACE_COLORS
    raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")


def _has_years(table: pd.DataFrame) -> bool:
    # FairFace and most of Adience only know an age group; mixing years and groups on one axis would mislead.
    return len(table) > 0 and bool(table["age"].notna().all())


def age_histogram(table: pd.DataFrame, color_by: str = "gender") -> go.Figure:
    """Stacked counts per year of age (per age group when ages in years are unknown), one trace per gender or
    race. Counted here rather than by Plotly, so the browser gets ~117 bars, not every row."""
    names, order, colors = _names_and_colors(table, color_by)
    if _has_years(table):
        x_values = table["age"].astype(int).clip(0, MAX_AGE)
        axis = list(range(MAX_AGE + 1))
        x_title = "age (years)"
    else:
        x_values = table["age_group"].fillna(UNKNOWN)
        axis = age_group_order(x_values)
        x_title = "age group"
    counts = pd.crosstab(x_values.to_numpy(), names.to_numpy()).reindex(index=axis, columns=order, fill_value=0)
    figure = go.Figure([
        go.Bar(x=axis, y=counts[name].tolist(), name=name, marker_color=colors.get(name)) for name in order
    ])
    return _layout(figure, f"Age, by {color_by}", barmode="stack", bargap=0.05, xaxis_title=x_title,
                   yaxis_title="images")


def _count_bar(names: pd.Series, order: list[str], colors: dict[str, str], title: str) -> go.Figure:
    counts = names.value_counts().reindex(order, fill_value=0)
    figure = go.Figure(go.Bar(x=order, y=counts.tolist(), marker_color=[colors.get(n) for n in order],
                              text=counts.tolist(), textposition="auto"))
    return _layout(figure, title, yaxis_title="images", showlegend=False)


def gender_bar(table: pd.DataFrame) -> go.Figure:
    names, order, colors = _names_and_colors(table, "gender")
    return _count_bar(names, order, colors, "Gender")


def race_bar(table: pd.DataFrame) -> go.Figure:
    names, order, colors = _names_and_colors(table, "race")
    return _count_bar(names, order, colors, "Race")


def age_race_heatmap(table: pd.DataFrame) -> go.Figure:
    """Image counts per age group × race: shows at a glance which combinations are too thin to learn from."""
    groups, races = table["age_group"].fillna(UNKNOWN), race_names(table)
    group_order, race_list = age_group_order(groups), race_order(races)
    counts = pd.crosstab(groups.to_numpy(), races.to_numpy()).reindex(index=group_order, columns=race_list,
                                                                      fill_value=0)
    figure = go.Figure(go.Heatmap(z=counts.to_numpy(), x=race_list, y=group_order, colorscale="Blues",
                                  texttemplate="%{z}", hovertemplate="%{y} · %{x}: %{z}<extra></extra>"))
    return _layout(figure, "Age group × race", height=420, yaxis_title="age group")


# --- evaluate ---
# Figures for the Evaluate page, built from core.evaluation reports ({model name: report}) and predictions frames.

# The metrics a chart offers, by their names on screen
EVAL_METRIC_LABELS = {key: name for key, name in METRIC_NAMES.items()
                      if key not in ("n", "age_within_2std", "gender_precision", "gender_recall")}
EVAL_DIMENSION_LABELS = {"race": "race", "gender": "gender", "age_group": "age group"}


def eval_age_scatter(frame, title: str = "Predicted vs true age"):
    """Each face as a point; the dashed identity line is a perfect prediction, so distance from it is error."""
    known = frame[frame["age"].notna()]
    true, pred = known["age"].astype("float64"), known["pred_age"].astype("float64")
    top = float(max(true.max() if len(true) else 1, pred.max() if len(pred) else 1, 1))
    fig = go.Figure([
        go.Scattergl(x=true, y=pred, mode="markers", name="faces", marker={"size": 5, "opacity": 0.5},
                     text=known["path"].map(lambda p: str(p).rsplit("/", 1)[-1]),
                     hovertemplate="true %{x:.0f} · predicted %{y:.1f}<br>%{text}<extra></extra>"),
        go.Scatter(x=[0, top], y=[0, top], mode="lines", name="perfect", line={"dash": "dash", "color": "grey"}),
    ])
    fig.update_layout(title=title, xaxis_title="true age", yaxis_title="predicted age", height=420)
    return fig


def eval_group_bars(reports: dict, dimension: str, metric: str):
    """The metric per group, one bar colour per model; faint bars are groups too small to trust. The title names
    each model's best–worst gap among the trusted groups."""
    fig = go.Figure()
    gaps = []
    for name, report in reports.items():
        groups = report["by_group"].get(dimension, {})
        fig.add_bar(x=list(groups), y=[m.get(metric) for m in groups.values()], name=name,
                    marker={"opacity": [0.35 if m["small"] else 1.0 for m in groups.values()]},
                    customdata=[m["n"] for m in groups.values()],
                    hovertemplate="%{x}: %{y:.3f} (n=%{customdata})<extra>" + name + "</extra>")
        gap = report["gaps"].get(dimension, {}).get(metric)
        if gap:
            gaps.append(f"{name}: gap {gap['gap']:.3g} ({gap['worst']} vs {gap['best']})")
    label = EVAL_METRIC_LABELS.get(metric, metric)
    subtitle = "<br><sup>" + "; ".join(gaps) + "</sup>" if gaps else ""
    fig.update_layout(title=f"{label} by {EVAL_DIMENSION_LABELS.get(dimension, dimension)}{subtitle}",
                      barmode="group", yaxis_title=label, height=420)
    return fig


def eval_cs_curve(reports: dict):
    """Cumulative score: the share of faces whose age is off by at most θ years (higher is better)."""
    fig = go.Figure()
    for name, report in reports.items():
        cs = report.get("age_cs", {})
        fig.add_scatter(x=[int(t) for t in cs], y=list(cs.values()), mode="lines+markers", name=name)
    fig.update_layout(title="Cumulative score", xaxis_title="error tolerance θ (years)",
                      yaxis_title="share of faces within θ", yaxis_range=[0, 1], height=380)
    return fig


def eval_confusion(confusion: dict, title: str):
    """Rows are true classes, columns predictions; colour is the share of the true class, text the count."""
    matrix = pd.DataFrame(confusion["matrix"])
    shares = matrix.div(matrix.sum(axis=1).clip(lower=1), axis=0)
    labels = confusion["labels"]
    fig = go.Figure(go.Heatmap(z=shares.to_numpy(), x=labels, y=labels, text=matrix.to_numpy(), texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "share"},
                               hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=400)
    return fig


def eval_reliability(reports: dict, task: str):
    """Reliability diagram: stated confidence against observed accuracy; a calibrated model sits on the diagonal."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated",
                               line={"dash": "dash", "color": "grey"}))
    for name, report in reports.items():
        rows = report.get("reliability", {}).get(task, [])
        ece = report.get(f"{task}_ece")
        label = f"{name} (ECE {ece:.3f})" if ece is not None else name
        fig.add_scatter(x=[r["confidence"] for r in rows], y=[r["accuracy"] for r in rows], mode="lines+markers",
                        name=label, customdata=[r["count"] for r in rows],
                        hovertemplate="confidence %{x:.2f} · accuracy %{y:.2f} (n=%{customdata})<extra></extra>")
    fig.update_layout(title=f"{task.capitalize()} calibration", xaxis_title="confidence",
                      yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1], height=380)
    return fig


SCORES = headline("age_cs5", "age_group_accuracy", "gender_accuracy", "race_accuracy", "race_macro_f1")  # 0–1 scale


def eval_headline_bars(reports: dict, metrics=SCORES):
    """Scores on a 0–1 scale side by side, one colour per model (missing labels leave gaps)."""
    fig = go.Figure()
    for name, report in reports.items():
        fig.add_bar(x=[EVAL_METRIC_LABELS.get(m, m) for m in metrics], y=[report.get(m) for m in metrics], name=name)
    fig.update_layout(title="Models side by side", barmode="group", yaxis_range=[0, 1], height=380)
    return fig


# --- training ---

# (log key, panel title): the loss and each head's metric in fit logs and history.csv, where Keras names them
# <output>_<metric> ("age_mae", "gender_accuracy"): the reports' names too.
TRAINING_PANELS = (("loss", "Loss"), *((key, EVAL_METRIC_LABELS[key]) for key in PER_TASK))
TRAINING_COLORS = {"train": "#4C78A8", "validation": "#F58518"}
MAX_CURVE_POINTS = 500  # a long run logs thousands of batches; the browser needs no more than this per curve


def _thinned(points: list[dict]) -> list[dict]:
    if len(points) <= MAX_CURVE_POINTS:
        return points
    keep = {round(i * (len(points) - 1) / (MAX_CURVE_POINTS - 1)) for i in range(MAX_CURVE_POINTS)}
    return [p for i, p in enumerate(points) if i in keep]


def _training_panels(latest: list[dict]) -> tuple[tuple[str, str], ...]:
    """TRAINING_PANELS, with age-group accuracy for age MAE when the model's age head is groups (its space's), and
    without a panel the model logs nothing for (an Adience model has no race head). Before any log: all of them."""
    def logged(key: str) -> bool:
        return any(key in row or f"val_{key}" in row for row in latest)
    panels = TRAINING_PANELS
    if logged("age_group_accuracy"):
        panels = tuple(("age_group_accuracy", EVAL_METRIC_LABELS["age_group_accuracy"]) if key == "age_mae"
                       else (key, title) for key, title in TRAINING_PANELS)
    return tuple(p for p in panels if logged(p[0])) or panels


def _batch_values(points: list[dict], key: str) -> list[tuple[float, float]]:
    """(epoch, the batch's own value) per logged batch. Keras logs running means that restart every epoch, which
    drew a jump at each epoch start: mean_k·k − mean_j·j is the mean of batches j+1..k, whatever was skipped."""
    values, prev_batch, prev_mean = [], 0, 0.0
    for point in points:
        batch = point.get("batch")
        if batch is None:  # a log from before batches were numbered: its running means as they are
            if point.get(key) is not None:
                values.append((point["epoch"], point[key]))
            continue
        if batch <= prev_batch:
            prev_batch, prev_mean = 0, 0.0  # a new epoch: its running means start again
        if point.get(key) is None:
            continue
        values.append((point["epoch"], (point[key] * batch - prev_mean * prev_batch) / (batch - prev_batch)))
        prev_batch, prev_mean = batch, point[key]
    return values


def _smoothed(values: list[tuple[float, float]], span: int) -> list[tuple[float, float]]:
    """An exponential moving average over batches (bias-corrected, so the first points are not pulled to 0)."""
    alpha, average, out = 2 / (span + 1), 0.0, []
    for count, (epoch, value) in enumerate(values, start=1):
        average = (1 - alpha) * average + alpha * value
        out.append((epoch, average / (1 - (1 - alpha) ** count)))
    return out


def training_curves(batch_log: list[dict], history: list[dict]) -> go.Figure:
    """One panel per quantity (loss, age MAE, gender and race accuracy), train vs validation on an epoch axis.

    While training, the train line is each batch's own value (undone from Keras's per-epoch running means),
    smoothed over about a quarter of an epoch, beside one point per finished epoch; a finished run read back from
    history.csv has only epoch points. Validation exists at epoch ends only."""
    from plotly.subplots import make_subplots

    panels = _training_panels([*history[-1:], *batch_log[-1:]])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for _, title in panels],
                        horizontal_spacing=0.06)
    per_epoch = max((p.get("batch") or 0 for p in batch_log), default=0)
    span = max(3, min(50, per_epoch // 4))
    for col, (key, _) in enumerate(panels, start=1):
        traces = [("validation", [(r["epoch"], r[f"val_{key}"]) for r in history
                                  if r.get(f"val_{key}") is not None], "lines+markers")]
        epochs = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        if batch_log:
            line = _thinned([{"epoch": e, "y": y} for e, y in _smoothed(_batch_values(batch_log, key), span)])
            traces = [("train", [(p["epoch"], p["y"]) for p in line], "lines"),
                      ("train (epoch)", epochs, "markers"), *traces]
        else:
            traces = [("train", epochs, "lines+markers"), *traces]
        for name, xy, mode in traces:
            color = TRAINING_COLORS["validation" if name == "validation" else "train"]
            fig.add_trace(go.Scatter(
                x=[x for x, _ in xy], y=[y for _, y in xy], mode=mode, name=name, legendgroup=name,
                showlegend=col == 1, line={"color": color}, marker={"color": color, "size": 8},
                hovertemplate=f"{name} · epoch %{{x:.2f}} · %{{y:.4f}}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig


# --- predict ---
# One face's probabilities as horizontal bars: the label with its percentage on each bar, on a fixed 0–100% axis
# so faces can be compared at a glance. Colours are the explore section's, so "female" or "Asian" match.

def _probability_bars(probabilities: dict[str, float], colors: dict[str, str], title: str) -> go.Figure:
    names = list(probabilities)
    values = [probabilities[name] for name in names]
    fig = go.Figure(go.Bar(
        x=values, y=names, orientation="h", marker_color=[colors.get(name, "#B0B0B0") for name in names],
        text=[f"{v:.0%}" for v in values], textposition="auto",
        hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")  # first label on top, in the given order
    return _layout(fig, title, height=70 + 28 * len(names), showlegend=False)


def predict_gender_bars(female_prob: float) -> go.Figure:
    return _probability_bars({"male": 1 - female_prob, "female": female_prob}, GENDER_COLORS, "Gender")


def predict_race_bars(race_probs: dict[str, float]) -> go.Figure:
    """Every race probability, in the model's order (UTKFace's 5, or FairFace's 7 for a FairFace model)."""
    return _probability_bars(dict(race_probs), RACE_COLORS, "Race")


def predict_age_group_bars(group_probs: dict[str, float]) -> go.Figure:
    """A group-head model's age groups (FairFace's 9, Adience's 8), youngest first."""
    return _probability_bars(dict(group_probs), {}, "Age group")
