//! `xent explain`: the cross-entropy of a few rows of scores, step by step
//! (max, shift, exp, sum, softmax, log-softmax, target, loss, reduction,
//! gradient), as an aligned table or as one JSON object.

use clap::{ArgGroup, Args, ValueEnum};
use serde_json::{json, Value};
use std::io::Write;
use xent::loss::{self, CrossEntropy, Explanation, Reduction, RowExplanation, RowTarget, Targets};
use xent::{Error, Result, Tensor};

/// How far a row of `--target-probs` may sum from 1.
const PROB_SUM_TOLERANCE: f64 = 1e-4;

/// Arguments of `xent explain`.
#[derive(Args, Clone, Debug)]
#[command(
    group(ArgGroup::new("target").required(true).args(["targets", "target_probs"])),
    after_help = "With --json, non-finite numbers are written as the strings \"nan\", \"inf\" \
                  and \"-inf\" (JSON has no such numbers), e.g. the mean loss when every \
                  target is ignored.\n\nExample: xent explain --logits \"2,1,0.1;0.5,2.5,0.3\" \
                  --targets \"0,1\""
)]
pub struct ExplainArgs {
    /// Scores, one row per sample: rows separated by ';', values by ','
    /// (e.g. "2,1,0.1;0.5,2.5,0.3")
    #[arg(long, allow_hyphen_values = true)]
    pub logits: String,

    /// The class index of each row, separated by ',' (e.g. "0,1")
    #[arg(long, allow_hyphen_values = true)]
    pub targets: Option<String>,

    /// A probability row per logits row, laid out like --logits; each row
    /// sums to 1
    #[arg(long, allow_hyphen_values = true)]
    pub target_probs: Option<String>,

    /// One weight per class, separated by ','
    #[arg(long, allow_hyphen_values = true)]
    pub weight: Option<String>,

    /// A class target equal to this is ignored
    #[arg(long, default_value_t = -100, allow_hyphen_values = true)]
    pub ignore_index: i64,

    /// Label smoothing ε in [0, 1]: the target becomes (1 - ε) y + ε / classes
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,

    /// How the per-row losses are combined
    #[arg(long, value_enum, default_value_t = ReductionArg::Mean)]
    pub reduction: ReductionArg,

    /// Print one JSON object (keys probs, log_probs, losses, loss, dlogits, ...)
    /// instead of the table
    #[arg(long)]
    pub json: bool,
}

/// `--reduction`, as PyTorch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReductionArg {
    /// Weighted mean of the losses
    Mean,
    /// Sum of the losses
    Sum,
    /// One loss per row
    None,
}

impl From<ReductionArg> for Reduction {
    fn from(arg: ReductionArg) -> Reduction {
        match arg {
            ReductionArg::Mean => Reduction::Mean,
            ReductionArg::Sum => Reduction::Sum,
            ReductionArg::None => Reduction::None,
        }
    }
}

/// Runs `xent explain`: prints the table or the JSON object to stdout.
///
/// # Errors
///
/// As [`render`], and [`Error::Io`] when stdout cannot be written.
pub fn run(args: &ExplainArgs) -> Result<()> {
    let text = render(args)?;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing", "standard output", e))
}

/// The whole output of `xent explain` for `args`.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for values that do not parse, ragged rows,
/// target rows that do not match the logits, probability rows that are
/// negative or do not sum to 1, and anything `cross_entropy` refuses.
pub fn render(args: &ExplainArgs) -> Result<String> {
    let rows = parse_rows("--logits", &args.logits)?;
    let (n, k) = (rows.len(), rows[0].len());
    let logits = Tensor::from_vec(&[n, k], rows.concat())?;
    let weight = args.weight.as_deref().map(|w| parse_weight(w, k)).transpose()?;
    check_options(args)?;
    let classes;
    let probs;
    let targets = match (&args.targets, &args.target_probs) {
        (Some(text), None) => {
            classes = parse_classes(text, n, k, args.ignore_index)?;
            Targets::Classes(&classes)
        }
        (None, Some(text)) => {
            probs = parse_probs(text, n, k)?;
            Targets::Probs(&probs)
        }
        _ => return Err(Error::arg("give exactly one of --targets and --target-probs")),
    };

    let opts = CrossEntropy {
        weight: weight.as_deref(),
        ignore_index: args.ignore_index,
        label_smoothing: args.label_smoothing,
        reduction: args.reduction.into(),
    };
    let explanation = loss::explain(&logits, targets, &opts)?;
    Ok(if args.json {
        let object = to_json(&explanation);
        serde_json::to_string_pretty(&object).expect("a JSON value always serialises") + "\n"
    } else {
        table(&explanation)
    })
}

/// The options in the flags' own words, before the library sees them.
fn check_options(args: &ExplainArgs) -> Result<()> {
    let eps = args.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::arg(format!("--label-smoothing must be in [0, 1], got {eps}")));
    }
    if args.target_probs.is_some() && args.ignore_index >= 0 {
        return Err(Error::arg(format!(
            "--ignore-index {} cannot be used with --target-probs; only class targets \
             (--targets) can be ignored",
            args.ignore_index
        )));
    }
    Ok(())
}

/// `1 value`, `2 values`, `3 classes`.
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ if noun.ends_with('s') => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

/// Rows separated by `;`, values by `,`, all of one length and finite (a
/// logit may also be `-inf`), within f32's range.
fn parse_rows(flag: &str, text: &str) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::new();
    for (r, row) in text.split(';').enumerate() {
        let values: Result<Vec<f32>> =
            row.split(',').enumerate().map(|(j, v)| parse_value(flag, r, j, v)).collect();
        rows.push(values?);
    }
    if let Some(r) = rows.iter().position(|row| row.len() != rows[0].len()) {
        return Err(Error::arg(format!(
            "{flag}: row {r} has {} but row 0 has {} (rows are separated by ';', \
             values by ',')",
            count(rows[r].len(), "value"),
            count(rows[0].len(), "value")
        )));
    }
    Ok(rows)
}

fn parse_value(flag: &str, row: usize, column: usize, text: &str) -> Result<f32> {
    let text = text.trim();
    let at = format!("{flag}: row {row}, value {column}");
    let lower = text.to_ascii_lowercase();
    let spelled_out = lower.contains("inf") || lower.contains("nan");
    let logits = flag == "--logits";
    match text.parse::<f32>() {
        _ if text.is_empty() => Err(Error::arg(format!("{at} is empty"))),
        Ok(v) if v.is_finite() => Ok(v),
        // A number such as 1e39 that f32 cannot hold is not an infinity the
        // user meant, not even -1e39 as a mask.
        Ok(_) if !spelled_out => Err(Error::arg(format!(
            "{at}: {text} is beyond f32's range (magnitudes up to about 3.4e38)"
        ))),
        // A logit of -inf masks a class out, as PyTorch allows.
        Ok(v) if v == f32::NEG_INFINITY && logits => Ok(v),
        Ok(_) if logits => Err(Error::arg(format!(
            "{at}: {text} is not a finite number; a logit may be -inf, which masks its class \
             out, but not +inf or NaN"
        ))),
        Ok(_) => Err(Error::arg(format!(
            "{at}: {text} is not a finite number; {flag} takes finite values only"
        ))),
        Err(_) => Err(Error::arg(format!("{at}: {text:?} is not a number"))),
    }
}

/// `--weight`: one value per class.
fn parse_weight(text: &str, classes: usize) -> Result<Vec<f32>> {
    let weight: Vec<f32> = parse_rows("--weight", &text.replace(';', ","))?.concat();
    if weight.len() != classes {
        return Err(Error::arg(format!(
            "--weight has {} but --logits has {}",
            count(weight.len(), "value"),
            count(classes, "class")
        )));
    }
    Ok(weight)
}

/// `--targets`: one class index (or the ignore index) per row.
fn parse_classes(text: &str, rows: usize, classes: usize, ignore_index: i64) -> Result<Vec<i64>> {
    let mut targets = Vec::new();
    for (r, value) in text.split([',', ';']).enumerate() {
        let value = value.trim();
        let y: i64 = value.parse().map_err(|_| {
            Error::arg(format!("--targets: value {r}: {value:?} is not a class index"))
        })?;
        targets.push(y);
    }
    if targets.len() != rows {
        return Err(Error::arg(format!(
            "--targets has {} but --logits has {}",
            count(targets.len(), "value"),
            count(rows, "row")
        )));
    }
    if let Some(r) =
        targets.iter().position(|&y| y != ignore_index && !(0..classes as i64).contains(&y))
    {
        return Err(Error::arg(format!(
            "--targets: row {r} has class {}, but --logits has {} \
             (valid: 0..={}, or the ignore index {ignore_index})",
            targets[r],
            count(classes, "class"),
            classes - 1
        )));
    }
    Ok(targets)
}

/// `--target-probs`: one row of non-negative values summing to 1 per row.
fn parse_probs(text: &str, rows: usize, classes: usize) -> Result<Tensor> {
    let probs = parse_rows("--target-probs", text)?;
    if probs.len() != rows {
        return Err(Error::arg(format!(
            "--target-probs has {} but --logits has {}",
            count(probs.len(), "row"),
            count(rows, "row")
        )));
    }
    if probs[0].len() != classes {
        return Err(Error::arg(format!(
            "--target-probs has {} per row but --logits has {}",
            count(probs[0].len(), "value"),
            count(classes, "class")
        )));
    }
    for (r, row) in probs.iter().enumerate() {
        if let Some(c) = row.iter().position(|&p| p < 0.0) {
            return Err(Error::arg(format!(
                "--target-probs: row {r} has a negative probability {} (class {c})",
                row[c]
            )));
        }
        let sum: f64 = row.iter().map(|&p| f64::from(p)).sum();
        if (sum - 1.0).abs() > PROB_SUM_TOLERANCE {
            return Err(Error::arg(format!(
                "--target-probs: row {r} sums to {sum:.6}, not 1 (tolerance {PROB_SUM_TOLERANCE:e})"
            )));
        }
    }
    Tensor::from_vec(&[rows, classes], probs.concat())
}

/// A number for JSON: finite values as numbers, the others as the strings
/// "nan", "inf" and "-inf", which JSON numbers cannot express.
fn number(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("nan")
    } else if v > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

fn numbers(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|&v| number(v)).collect())
}

/// One value per row.
fn per_row(ex: &Explanation, f: impl Fn(&RowExplanation) -> f64) -> Value {
    Value::Array(ex.rows.iter().map(|r| number(f(r))).collect())
}

/// One list per row.
fn matrix(ex: &Explanation, f: impl Fn(&RowExplanation) -> &[f64]) -> Value {
    Value::Array(ex.rows.iter().map(|r| numbers(f(r))).collect())
}

/// The JSON object: `probs`, `log_probs`, `losses`, `loss` (a list for
/// reduction none), `dlogits`, and every intermediate step.
fn to_json(ex: &Explanation) -> Value {
    let target_classes: Vec<Value> = ex
        .rows
        .iter()
        .map(|r| match r.target {
            RowTarget::Class(c) => json!(c),
            RowTarget::Ignored | RowTarget::Probs => Value::Null,
        })
        .collect();
    json!({
        "reduction": ex.reduction.name(),
        "classes": ex.classes(),
        "weight": ex.class_weights.as_deref().map(numbers),
        "ignore_index": ex.ignore_index,
        "label_smoothing": number(ex.label_smoothing),
        "logits": matrix(ex, |r| &r.logits),
        "max": per_row(ex, |r| r.max),
        "shifted": matrix(ex, |r| &r.shifted),
        "exps": matrix(ex, |r| &r.exps),
        "sum": per_row(ex, |r| r.sum),
        "logsumexp": per_row(ex, |r| r.logsumexp),
        "probs": matrix(ex, |r| &r.probs),
        "log_probs": matrix(ex, |r| &r.log_probs),
        "target_classes": target_classes,
        "targets": matrix(ex, |r| &r.target_probs),
        "row_weights": per_row(ex, |r| r.weight),
        "losses": numbers(&ex.losses()),
        "denominator": number(ex.denominator),
        "loss": ex.loss().map_or_else(|| numbers(&ex.losses()), number),
        "dlogits": matrix(ex, |r| &r.dlogits),
    })
}

/// A number for the table: 4 decimals in a readable range, scientific
/// notation outside it, lowercase non-finite names.
fn fmt(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v == 0.0 {
        "0.0000".into()
    } else if (1e-4..1e6).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.4e}")
    }
}

/// Width of a value column when every value fits in it with room to spare.
const COLUMN: usize = 12;

/// Width of the value columns: the widest value or class heading of the
/// table and two spaces, so neighbours never run together (`1e5` prints as
/// `100000.0000`), and at least [`COLUMN`].
fn column_width<'a>(classes: usize, values: impl Iterator<Item = &'a f64>) -> usize {
    let heading = format!("class {}", classes.saturating_sub(1)).len();
    let widest = values.map(|&v| fmt(v).len()).max().unwrap_or(0).max(heading);
    (widest + 2).max(COLUMN)
}

/// One line of a row's table: step, formula, values.
struct Line {
    step: &'static str,
    formula: String,
    values: Vec<f64>,
}

impl Line {
    fn new(step: &'static str, formula: impl Into<String>, values: &[f64]) -> Line {
        Line { step, formula: formula.into(), values: values.to_vec() }
    }
}

/// Lines with the step and formula columns padded to their widest entry and
/// the values in columns of `column` characters.
fn aligned(header: Option<&str>, lines: &[Line], column: usize) -> String {
    let step_w = lines.iter().map(|l| l.step.len()).max().unwrap_or(0).max(4);
    let formula_w = lines.iter().map(|l| l.formula.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    if let Some(header) = header {
        out += &format!("  {:step_w$}  {:formula_w$}{header}\n", "step", "formula");
    }
    for line in lines {
        let pad = formula_w - line.formula.chars().count();
        out += &format!("  {:step_w$}  {}{}", line.step, line.formula, " ".repeat(pad));
        for &v in &line.values {
            out += &format!("{:>column$}", fmt(v));
        }
        out = out.trim_end().to_string();
        out.push('\n');
    }
    out
}

/// The table: every row step by step, then the reduction and the gradient.
fn table(ex: &Explanation) -> String {
    let k = ex.classes();
    let rows: Vec<Vec<Line>> = ex.rows.iter().map(|row| row_lines(ex, row)).collect();
    let shown = rows.iter().flatten().flat_map(|line| &line.values);
    let column = column_width(k, shown.chain(ex.rows.iter().flat_map(|r| &r.dlogits)));
    let header: String = (0..k).map(|c| format!("{:>column$}", format!("class {c}"))).collect();
    let mut out = format!(
        "cross-entropy of {} row{} and {k} classes, reduction {}{}\n",
        ex.rows.len(),
        if ex.rows.len() == 1 { "" } else { "s" },
        ex.reduction,
        options_note(ex)
    );
    for (i, (row, lines)) in ex.rows.iter().zip(&rows).enumerate() {
        out += &format!("\nrow {i}: {}\n", row_title(ex, row));
        out += &aligned(Some(&header), lines, column);
    }
    out += &reduction_text(ex);
    out += &gradient_text(ex, &header, column);
    out
}

/// The options that differ from PyTorch's defaults.
fn options_note(ex: &Explanation) -> String {
    let mut notes = Vec::new();
    if let Some(w) = &ex.class_weights {
        let w: Vec<String> = w.iter().map(|&w| fmt(w)).collect();
        notes.push(format!("class weights [{}]", w.join(", ")));
    }
    if ex.label_smoothing > 0.0 {
        notes.push(format!("label smoothing {}", ex.label_smoothing as f32));
    }
    if ex.ignore_index != -100 {
        notes.push(format!("ignore_index {}", ex.ignore_index));
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!(", {}", notes.join(", "))
    }
}

fn row_title(ex: &Explanation, row: &RowExplanation) -> String {
    match row.target {
        RowTarget::Class(c) if ex.class_weights.is_some() => {
            format!("target class {c}, weight w[{c}] = {}", fmt(row.weight))
        }
        RowTarget::Class(c) => format!("target class {c}"),
        RowTarget::Ignored => format!(
            "target is ignore_index {}: no loss, no gradient, not counted in the mean",
            ex.ignore_index
        ),
        RowTarget::Probs => "target probabilities".into(),
    }
}

/// The softmax steps, then target and loss.
fn row_lines(ex: &Explanation, row: &RowExplanation) -> Vec<Line> {
    let eps = ex.label_smoothing as f32;
    let k = row.logits.len();
    let mut lines = vec![
        Line::new("z", "logits (scores)", &row.logits),
        Line::new("max", "max(z)", &[row.max]),
        Line::new("z - max", "subtract the max: exp cannot overflow", &row.shifted),
        Line::new("e", "exp(z - max)", &row.exps),
        Line::new("sum", "sum(e)", &[row.sum]),
        Line::new("lse", "logsumexp(z) = max + log(sum)", &[row.logsumexp]),
        Line::new("p", "p = exp(z - max) / sum", &row.probs),
        Line::new("log_p", "log_p = z - logsumexp(z)", &row.log_probs),
    ];
    let target = match row.target {
        RowTarget::Class(c) if eps > 0.0 => format!("y = {} * one-hot({c}) + {eps}/{k}", 1.0 - eps),
        RowTarget::Class(c) => format!("y = one-hot({c})"),
        RowTarget::Probs if eps > 0.0 => format!("y = {} * given + {eps}/{k}", 1.0 - eps),
        RowTarget::Probs => "y = given probabilities".into(),
        RowTarget::Ignored => "y: ignored".into(),
    };
    lines.push(Line::new("y", target, &row.target_probs));
    if let Some(w) = &ex.class_weights {
        lines.push(Line::new("w", "class weights", w));
    }
    let weighted = ex.class_weights.is_some();
    let loss = match row.target {
        RowTarget::Ignored => "loss = 0 (ignored)",
        RowTarget::Class(_) if eps == 0.0 && weighted => "loss = w[y] * (logsumexp(z) - z[y])",
        RowTarget::Class(_) if eps == 0.0 => "loss = logsumexp(z) - z[y]",
        _ if weighted => "loss = sum_c w_c y_c (logsumexp(z) - z_c)",
        _ => "loss = sum_c y_c (logsumexp(z) - z_c)",
    };
    lines.push(Line::new("loss", loss, &[row.loss]));
    let share = match row.target {
        RowTarget::Class(_) if weighted => "row weight w[y], counted in the mean",
        RowTarget::Class(_) => "row weight, counted in the mean",
        RowTarget::Ignored => "row weight: ignored, not counted",
        RowTarget::Probs => "row weight: each row counts once in the mean",
    };
    lines.push(Line::new("weight", share, &[row.weight]));
    lines
}

/// How the losses combine, with the numbers.
fn reduction_text(ex: &Explanation) -> String {
    let total = fmt(ex.total);
    let Some(loss) = ex.loss() else {
        let losses: Vec<String> = ex.losses().iter().map(|&l| fmt(l)).collect();
        return format!("\nreduction none: one loss per row\nlosses = [{}]\n", losses.join(", "));
    };
    let formula = match ex.reduction {
        Reduction::Sum => format!("loss = sum_i loss_i = {total}"),
        _ => {
            let denominator = match (ex.rows.first().map(|r| r.target), &ex.class_weights) {
                (Some(RowTarget::Probs), _) => "N".to_string(),
                (_, Some(_)) => "sum_i w[y_i] over rows not ignored".into(),
                (_, None) => "number of rows not ignored".into(),
            };
            format!(
                "loss = sum_i loss_i / ({denominator}) = {total} / {} = {}",
                fmt(ex.denominator),
                fmt(loss)
            )
        }
    };
    format!("\nreduction {}: {formula}\nloss = {}\n", ex.reduction, fmt(loss))
}

/// The gradient of the reported loss with respect to the logits.
fn gradient_text(ex: &Explanation, header: &str, column: usize) -> String {
    let core = if ex.class_weights.is_some() { "p * sum_c(w_c y_c) - w * y" } else { "p - y" };
    let formula = match ex.reduction {
        Reduction::Mean => format!("dlogits = ({core}) / {}", fmt(ex.denominator)),
        Reduction::Sum => format!("dlogits = {core}"),
        Reduction::None => format!("dlogits = {core}   (gradient of sum_i loss_i)"),
    };
    let mut out = format!("\ngradient: {formula}\n");
    out += &format!("  {:4}{header}\n", "row");
    for (i, row) in ex.rows.iter().enumerate() {
        out += &format!("  {i:<4}");
        for &d in &row.dlogits {
            out += &format!("{:>column$}", fmt(d));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(logits: &str, targets: &str) -> ExplainArgs {
        ExplainArgs {
            logits: logits.into(),
            targets: Some(targets.into()),
            target_probs: None,
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: ReductionArg::Mean,
            json: false,
        }
    }

    #[test]
    fn rows_parse_with_spaces_and_refuse_ragged_or_bad_values() {
        assert_eq!(parse_rows("--logits", " 1, 2 ;3,-4e1").unwrap(), [[1.0, 2.0], [3.0, -40.0]]);
        let ragged = parse_rows("--logits", "1,2;3").unwrap_err().to_string();
        assert!(ragged.contains("row 1 has 1 value but row 0 has 2 values"), "{ragged}");
        let bad = parse_rows("--logits", "1,x").unwrap_err().to_string();
        assert!(bad.contains("row 0, value 1") && bad.contains("\"x\""), "{bad}");
        assert!(parse_rows("--logits", "1,;2,3").is_err());
        assert!(parse_rows("--logits", "1,inf").is_err());
    }

    #[test]
    fn table_shows_every_step_and_the_formulas() {
        let text = render(&args("2,1,0.1;0.5,2.5,0.3", "0,1")).unwrap();
        for needle in [
            "p = exp(z - max) / sum",
            "loss = logsumexp(z) - z[y]",
            "log_p = z - logsumexp(z)",
            "max(z)",
            "sum(e)",
            "y = one-hot(0)",
            "reduction mean",
            "dlogits = (p - y) / 2.0000",
            "0.6590",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn json_writes_non_finite_values_as_strings() {
        let mut a = args("1,2;3,4", "0,0");
        a.ignore_index = 0;
        a.json = true;
        let value: Value = serde_json::from_str(&render(&a).unwrap()).unwrap();
        assert_eq!(value["loss"], "nan");
        assert_eq!(value["dlogits"], json!([[0.0, 0.0], [0.0, 0.0]]));
        assert_eq!(number(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn fmt_switches_to_scientific_outside_the_readable_range() {
        assert_eq!(fmt(0.5), "0.5000");
        assert_eq!(fmt(-0.0), "0.0000");
        assert_eq!(fmt(4.54e-5), "4.5400e-5");
        assert_eq!(fmt(f64::NAN), "nan");
    }
}
