//! The report as one self-contained HTML page: inline CSS and SVG charts, no script, no
//! external file — it can be mailed or opened offline.

use std::fmt::Write;

use super::observe::Terminal;
use super::report::{pct, thousands as n, Report};

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Dossiers per second over time, one line per step.
fn throughput_chart(r: &Report) -> String {
    let series: Vec<(&str, &Vec<u32>)> = [
        "submitted",
        "accepted",
        "verified",
        "paid",
        "routed",
        "decided",
        "result returned",
    ]
    .iter()
    .filter_map(|s| r.throughput.get(*s).map(|v| (*s, v)))
    .collect();
    let len = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(2);
    let peak = series.iter().flat_map(|(_, v)| v.iter()).copied().max().unwrap_or(0) as f64;
    let ymax = nice_max(peak);
    let (w, h, left, bottom, top, right) = (860.0, 300.0, 60.0, 30.0, 10.0, 150.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x = |i: usize| left + pw * i as f64 / (len - 1) as f64;
    let y = |v: f64| top + ph - ph * v / ymax;
    let mut svg = format!(r#"<svg viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="throughput over time">"#);
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            n(v as u64),
            y = y(v)
        );
    }
    let step = (len / 8).max(1);
    for i in (0..len).step_by(step) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" class="tick" text-anchor="middle">{i} s</text>"#,
            x(i),
            h - 10.0
        );
    }
    for (k, (name, v)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<String> = (0..len)
            .map(|i| format!("{:.1},{:.1}", x(i), y(v.get(i).copied().unwrap_or(0) as f64)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/><rect x="{}" y="{}" width="12" height="4" fill="{color}"/><text x="{}" y="{}" class="tick">{}</text>"#,
            points.join(" "),
            left + pw + 14.0,
            top + 8.0 + k as f64 * 18.0,
            left + pw + 30.0,
            top + 13.0 + k as f64 * 18.0,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// p50–p99 of each stage on one logarithmic axis: a bar from p50 to p99, a tick at p95.
fn latency_chart(r: &Report) -> String {
    let max = r.latencies.iter().map(|l| l.p99_ms).max().unwrap_or(1).max(10) as f64;
    let decades = max.log10().ceil().max(1.0);
    let (w, row, left, right) = (860.0, 26.0, 190.0, 30.0);
    let h = row * r.latencies.len() as f64 + 40.0;
    let pw = w - left - right;
    let x = |ms: f64| left + pw * (ms.max(1.0).log10() / decades);
    let mut svg = format!(r#"<svg viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="stage latency">"#);
    for d in 0..=decades as i32 {
        let v = 10f64.powi(d);
        let label = if v >= 1000.0 {
            format!("{} s", v / 1000.0)
        } else {
            format!("{v} ms")
        };
        let _ = write!(
            svg,
            r##"<line x1="{xv:.1}" x2="{xv:.1}" y1="0" y2="{}" stroke="#ddd"/><text x="{xv:.1}" y="{}" class="tick" text-anchor="middle">{label}</text>"##,
            h - 30.0,
            h - 12.0,
            xv = x(v)
        );
    }
    for (k, l) in r.latencies.iter().enumerate() {
        let yc = 14.0 + k as f64 * row;
        let color = COLORS[k % COLORS.len()];
        let _ = write!(
            svg,
            r##"<text x="{}" y="{:.1}" class="label" text-anchor="end">{}</text><rect x="{:.1}" y="{:.1}" width="{:.1}" height="12" rx="3" fill="{color}" opacity="0.55"/><line x1="{p95:.1}" x2="{p95:.1}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-width="2"/><circle cx="{:.1}" cy="{yc:.1}" r="4" fill="{color}"/>"##,
            left - 8.0,
            yc + 4.0,
            esc(&l.stage),
            x(l.p50_ms as f64),
            yc - 6.0,
            (x(l.p99_ms as f64) - x(l.p50_ms as f64)).max(2.0),
            yc - 8.0,
            yc + 8.0,
            x(l.p50_ms as f64),
            p95 = x(l.p95_ms as f64),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One stacked horizontal bar with a legend (wrapped onto as many lines as it needs).
fn stacked_bar(parts: &[(&str, u64, &str)]) -> String {
    let total: u64 = parts.iter().map(|p| p.1).sum::<u64>().max(1);
    let mut bar = String::new();
    let mut legend = String::new();
    let mut x = 0.0;
    let (mut lx, mut ly) = (0.0, 38.0);
    for (label, v, color) in parts {
        let w = 860.0 * *v as f64 / total as f64;
        let _ = write!(
            bar,
            r#"<rect x="{x:.1}" y="0" width="{w:.1}" height="26" fill="{color}"><title>{} {}</title></rect>"#,
            esc(label),
            v
        );
        x += w;
        let text = format!("{} {} ({:.1} %)", label, n(*v), 100.0 * *v as f64 / total as f64);
        // About 6 px per character at 11 px.
        let width = 24.0 + 6.2 * text.chars().count() as f64;
        if lx > 0.0 && lx + width > 860.0 {
            lx = 0.0;
            ly += 18.0;
        }
        let _ = write!(
            legend,
            r#"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            lx + 16.0,
            ly + 10.0,
            esc(&text)
        );
        lx += width;
    }
    format!(
        r#"<svg viewBox="0 0 860 {:.0}" class="chart" role="img">{bar}{legend}</svg>"#,
        ly + 22.0
    )
}

/// Horizontal bars, each row possibly stacked (values with their colors).
fn bars(rows: &[(String, Vec<(u64, &str)>)], legend: &[(&str, &str)]) -> String {
    let max = rows
        .iter()
        .map(|(_, v)| v.iter().map(|p| p.0).sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, row, left) = (860.0, 17.0, 300.0);
    let pw = w - left - 70.0;
    let h = row * rows.len() as f64 + 28.0;
    let mut svg = format!(r#"<svg viewBox="0 0 {w} {h}" class="chart" role="img">"#);
    for (k, (label, parts)) in rows.iter().enumerate() {
        let y = 4.0 + k as f64 * row;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" class="label" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + 11.0,
            esc(label)
        );
        let mut x = left;
        for (v, color) in parts {
            let bw = pw * *v as f64 / max;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="13" fill="{color}"/>"#
            );
            x += bw;
        }
        let total: u64 = parts.iter().map(|p| p.0).sum();
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            x + 5.0,
            y + 11.0,
            n(total)
        );
    }
    let mut lx = left;
    for (label, color) in legend {
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            h - 16.0,
            lx + 16.0,
            h - 6.0,
            esc(label)
        );
        lx += 24.0 + 6.2 * label.chars().count() as f64;
    }
    svg.push_str("</svg>");
    svg
}

fn tile(label: &str, value: &str, note: &str) -> String {
    format!(
        r#"<div class="tile"><div class="v">{}</div><div class="l">{}</div><div class="n">{}</div></div>"#,
        esc(value),
        esc(label),
        esc(note)
    )
}

/// Supplements, pauses, withdrawals and new appointments; the statistics by definition;
/// one paused dossier's history.
fn legal_clock(h: &mut String, r: &Report) {
    let c = &r.clock;
    let _ = write!(
        h,
        "<h2>The legal clock</h2><table><tr><th>citizens and officers</th><th></th></tr>\
         <tr><td>supplement requests (intake / verify / back office)</td><td>{} / {} / {}</td></tr>\
         <tr><td>supplements brought (days later, simulated)</td><td>{}</td></tr>\
         <tr><td>dossiers resumed at verify or the back office under the same code</td><td>{}</td></tr>\
         <tr><td>routed dossiers whose clock was paused</td><td>{}</td></tr>\
         <tr><td>working time paused (due times moved by it)</td><td>{:.1} h</td></tr>\
         <tr><td>withdrawals published</td><td>{}</td></tr>\
         <tr><td>new appointments (apology and new date)</td><td>{}</td></tr>",
        n(c.requested.get("intake").copied().unwrap_or(0)),
        n(c.requested.get("verify").copied().unwrap_or(0)),
        n(c.requested.get("backoffice").copied().unwrap_or(0)),
        n(c.supplements),
        n(c.resumed),
        n(c.routed_paused),
        c.paused_working_ms as f64 / 3_600_000.0,
        n(c.withdrawals),
        n(c.reappointments)
    );
    for (code, count) in &r.refused_requests {
        let _ = write!(
            h,
            "<tr><td>refused request: {}</td><td>{}</td></tr>",
            esc(code),
            n(*count)
        );
    }
    h.push_str("</table>");
    if let Some(st) = &r.statistics {
        let _ = write!(
            h,
            "<h2>Statistics by definition</h2><p>Counted as docs/statistics.md defines them (received at the \
             receiving unit; resolved at the deciding unit by decision time, early / on time / late against the legal \
             due time with pauses given back; a new appointment does not make a late dossier on time). {}</p>\
             <table><tr><th>field</th><th>received</th><th>online</th><th>rejected</th><th>resolved</th><th>early</th>\
             <th>on time</th><th>late</th><th>on-time rate</th><th>withdrawn</th><th>stopped</th><th>paused</th>\
             <th>reappointed</th></tr>",
            match st.rows_differing_from_projection {
                Some(0) => format!(
                    "All {} rows (month × unit × procedure × field) equal the status API's.",
                    st.rows
                ),
                Some(d) => format!("{d} of {} rows DIFFER from the status API's.", st.rows),
                None => String::new(),
            }
        );
        let row = |h: &mut String, name: &str, c: &motcua_stats::Counts| {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                n(c.received),
                n(c.received_online),
                n(c.rejected_at_reception),
                n(c.resolved),
                n(c.resolved_early),
                n(c.resolved_on_time),
                n(c.resolved_late),
                pct(c.on_time_rate()),
                n(c.withdrawn),
                n(c.stopped),
                n(c.resolved_paused),
                n(c.resolved_reappointed)
            );
        };
        for (field, c) in &st.by_field {
            row(h, field, c);
        }
        row(h, "all", &st.totals);
        h.push_str("</table>");
    }
    if !r.step_times.is_empty() {
        h.push_str(
            "<h2>Time per step</h2><p>Average working hours of each finished step of the internal process, and the \
             share of those steps over their budget (procedure-steps.csv), from the status projection. The stages \
             stamp the wall clock while officers' decisions carry simulated days, so in the demo reception and \
             verification take minutes, appraisal and approval days, and the result step (wall clock after a \
             simulated decision) shows 0.</p><table><tr><th>field</th>",
        );
        for step in motcua_routing::Step::ALL {
            let _ = write!(h, "<th>{}</th>", step.as_str());
        }
        h.push_str("</tr>");
        for s in &r.step_times {
            let _ = write!(h, "<tr><td>{}</td>", esc(&s.field));
            for step in motcua_routing::Step::ALL {
                let i = step.index();
                match s.average_hours(step) {
                    Some(avg) => {
                        let over = 100.0 * s.over_budget[i] as f64 / s.finished[i].max(1) as f64;
                        let _ = write!(h, "<td>{avg:.1} h ({over:.0} % over)</td>");
                    }
                    None => h.push_str("<td>–</td>"),
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    if let Some(code) = &r.clock.sample_paused_code {
        let _ = write!(
            h,
            "<h2>A dossier whose clock was paused: {}</h2><p>From the status API. The stages stamp the wall \
             clock; the citizen's supplement and the officers' decision carry simulated days, so the clock's pause \
             (request to supplement, working time only) is given back in the due time.</p>\
             <table><tr><th>time</th><th>event</th><th>stage</th><th>status</th><th>reasons</th></tr>",
            esc(code)
        );
        for l in &r.sample_history {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.at),
                esc(&l.event),
                esc(&l.stage),
                esc(l.status.as_deref().unwrap_or("")),
                esc(&l.reasons)
            );
        }
        h.push_str("</table>");
    }
}

pub(crate) fn render(r: &Report) -> String {
    let s = &r.settings;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>motcua — {prov}: {ended} dossiers end to end</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#222}}
main{{max-width:920px;margin:0 auto;padding:24px}}
h1{{font-size:1.5em;margin:0 0 4px}} h2{{font-size:1.1em;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}}
.sub{{color:#666;margin:0 0 16px}}
.tiles{{display:grid;grid-template-columns:repeat(3,1fr);gap:10px}}
.tile{{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:12px}}
.tile .v{{font-size:1.6em;font-weight:600}} .tile .l{{color:#444}} .tile .n{{color:#888;font-size:.85em}}
.chart{{width:100%;height:auto;background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:6px;box-sizing:border-box}}
.tick{{font-size:11px;fill:#555}} .label{{font-size:12px;fill:#222}}
table{{border-collapse:collapse;width:100%;background:#fff;font-size:.92em}}
td,th{{border:1px solid #e3e3e3;padding:4px 8px;text-align:right}} td:first-child,th:first-child{{text-align:left}}
.ok{{color:#2ca02c;font-weight:600}} .bad{{color:#d62728;font-weight:600}}
.verdict{{padding:10px 14px;border-radius:8px;margin:12px 0;background:#e9f6ec;border:1px solid #bfe3c6}}
.verdict.bad{{background:#fdecea;border-color:#f3b8b1}}
footer{{color:#777;font-size:.85em;margin-top:28px}}
</style></head><body><main>
<h1>One-stop centers of {prov} — {total} submissions through the whole pipeline</h1>
<p class="sub">{units} receiving centers (communes, wards, special zones) · {total} submissions · generated {at} · motcua {version}</p>
"#,
        prov = esc(&s.province_name),
        ended = n(r.ended),
        units = s.units,
        total = n(r.published.total),
        at = esc(&r.generated_at),
        version = env!("CARGO_PKG_VERSION"),
    );
    let verdict_ok = r.ok();
    let _ = write!(
        h,
        r#"<div class="verdict{}">{}</div>"#,
        if verdict_ok { "" } else { " bad" },
        if verdict_ok {
            format!(
                "Every one of the {} dossiers reached exactly one terminal state; only the {} deliberately malformed messages are in the dead-letter topic; all {} figures below equal the database's.",
                n(r.published.dossiers()),
                n(r.published.malformed),
                r.checks.len()
            )
        } else {
            format!(
                "Not every check passed: {} of {} dossiers ended, {} dossiers with two terminal states, {} dead letters for {} malformed messages, {} figures differ from the database.",
                n(r.ended),
                n(r.published.dossiers()),
                r.terminal_twice,
                r.dead_lettered,
                r.published.malformed,
                r.checks.iter().filter(|c| !c.ok).count()
            )
        }
    );
    h.push_str(r#"<div class="tiles">"#);
    h.push_str(&tile(
        "dossiers through every stage",
        &n(r.ended),
        &format!("in {:.1} s of broker time", r.pipeline_secs),
    ));
    h.push_str(&tile(
        "dossiers per second, end to end",
        &format!("{:.0}", r.end_to_end_per_sec),
        "submission to terminal state, all stages on 1 machine",
    ));
    h.push_str(&tile(
        "on-time rate",
        &pct(r.on_time_rate),
        &format!("of {} results returned", n(r.terminal_count(Terminal::ResultReturned))),
    ));
    h.push_str(&tile(
        "submitted online",
        &pct(r.online_rate),
        &format!("{} of {}", n(r.online), n(r.published.dossiers())),
    ));
    h.push_str(&tile(
        "end-to-end latency p95",
        &r.latencies
            .iter()
            .find(|l| l.stage == "end to end")
            .map_or("–".to_owned(), |l| format!("{:.1} s", l.p95_ms as f64 / 1000.0)),
        "submission to terminal state, incl. queueing",
    ));
    h.push_str(&tile(
        "dead-lettered",
        &n(r.dead_lettered),
        &format!("{} malformed published", n(r.published.malformed)),
    ));
    h.push_str("</div>");

    h.push_str("<h2>Throughput over time (dossiers per second reaching each step)</h2>");
    h.push_str(&throughput_chart(r));

    h.push_str("<h2>How dossiers ended</h2>");
    h.push_str(&stacked_bar(&[
        ("result returned", r.terminal_count(Terminal::ResultReturned), COLORS[2]),
        (
            "rejected at reception",
            r.terminal_count(Terminal::RejectedAtReception),
            COLORS[3],
        ),
        ("withdrawn", r.terminal_count(Terminal::Withdrawn), COLORS[1]),
        (
            "stopped (no supplement, bill expired, unroutable)",
            r.terminal_count(Terminal::Stopped),
            COLORS[5],
        ),
        (
            "escalated to an officer",
            r.terminal_count(Terminal::Escalated),
            COLORS[4],
        ),
    ]));
    legal_clock(&mut h, r);
    h.push_str("<h2>Timeliness of returned results</h2>");
    let t = |k: &str| r.timeliness.get(k).copied().unwrap_or(0);
    h.push_str(&stacked_bar(&[
        ("early", t("early"), COLORS[2]),
        ("on time", t("on_time"), COLORS[0]),
        ("late", t("late"), COLORS[3]),
    ]));

    h.push_str("<h2>Stage latency (broker time from a stage's input to its output; bar p50–p99, black tick p95)</h2>");
    h.push_str(&latency_chart(r));
    h.push_str("<table><tr><th>stage</th><th>dossiers</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>");
    for l in &r.latencies {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{} ms</td><td>{} ms</td><td>{} ms</td></tr>",
            esc(&l.stage),
            n(l.samples as u64),
            n(l.p50_ms as u64),
            n(l.p95_ms as u64),
            n(l.p99_ms as u64),
            n(l.max_ms as u64)
        );
    }
    h.push_str("</table><p class=\"sub\">Each figure is broker time from the message a stage read to the message it wrote, so it includes the time spent queued behind the burst of submissions. The gateway line is the (simulated) citizen paying; officers' decisions are stamped in simulated business time but reach the topic as fast as the back-office simulator decides.</p>");

    h.push_str("<h2>Load per receiving center</h2>");
    let mut centers: Vec<_> = r.centers.iter().collect();
    centers.sort_by(|a, b| {
        (b.online + b.other)
            .cmp(&(a.online + a.other))
            .then(a.code.cmp(&b.code))
    });
    let rows: Vec<(String, Vec<(u64, &str)>)> = centers
        .iter()
        .map(|c| {
            (
                format!("{} {}", c.code, c.name),
                vec![(c.online, COLORS[0]), (c.other, COLORS[1])],
            )
        })
        .collect();
    h.push_str(&bars(&rows, &[("online", COLORS[0]), ("counter, post", COLORS[1])]));
    let routed = r.steps.get("routed").copied().unwrap_or(0);
    let _ = write!(
        h,
        "<p class=\"sub\">{} of {} routed dossiers ({}) went to another unit than the one that received them: \
         received outside their jurisdiction, or decided at district or province level.</p>",
        n(r.routed_elsewhere),
        n(routed),
        pct((routed > 0).then(|| r.routed_elsewhere as f64 / routed as f64))
    );

    h.push_str("<h2>Top reasons dossiers stopped (intake and verify)</h2>");
    let rows: Vec<(String, Vec<(u64, &str)>)> = r
        .stop_reasons
        .iter()
        .take(10)
        .map(|(k, v)| {
            let mut parts = k.splitn(3, '/');
            let (stage, status, code) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            (format!("{code} ({stage}, status {status})"), vec![(*v, COLORS[3])])
        })
        .collect();
    h.push_str(&bars(&rows, &[]));

    h.push_str("<h2>Dead-letter topic</h2><table><tr><th>stage: reason</th><th>messages</th></tr>");
    for (k, v) in &r.dead_letters {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), n(*v));
    }
    let _ = write!(
        h,
        "<tr><td><b>distinct messages</b> (malformed published: {}; not malformed: {})</td><td><b>{}</b></td></tr></table><p class=\"sub\">Every group that cannot read a message dead-letters it with its reason, so a malformed submission appears once per group that reads submissions (intake, track).</p>",
        n(r.published.malformed),
        n(r.unexpected_dead_letters),
        n(r.dead_lettered)
    );

    let g = &r.registry;
    let _ = write!(
        h,
        "<h2>The outside world (simulated)</h2><table><tr><th>registries (population, land, business)</th><th></th></tr>\
         <tr><td>requests answered</td><td>{}</td></tr><tr><td>faults injected (HTTP 503)</td><td>{}</td></tr>\
         <tr><td>verify's lookups / served from its cache</td><td>{} / {}</td></tr>\
         <tr><td>calls refused by the circuit breaker</td><td>{}</td></tr>",
        n(g.answered),
        n(g.faults_injected),
        n(g.lookups),
        n(g.cache_hits),
        n(g.breaker_rejections)
    );
    let w = &r.outward;
    let _ = write!(
        h,
        "<tr><th>citizens' e-wallets</th><th></th></tr><tr><td>results filed</td><td>{}</td></tr>\
         <tr><td>resends absorbed (same idempotency key)</td><td>{}</td></tr>\
         <tr><td>acknowledgements lost after filing</td><td>{}</td></tr><tr><td>faults injected (HTTP 503)</td><td>{}</td></tr>\
         <tr><th>National Public Service Portal</th><th></th></tr><tr><td>status changes filed / seen on dossier.status</td><td>{} / {}</td></tr>\
         <tr><td>resends absorbed (same change id)</td><td>{}</td></tr>\
         <tr><td>acknowledgements lost after filing</td><td>{}</td></tr><tr><td>faults injected (HTTP 503)</td><td>{}</td></tr>\
         <tr><td>portal-sync lag at the end (messages)</td><td>{}</td></tr>",
        n(w.wallet("filed")),
        n(w.wallet("duplicates")),
        n(w.wallet("lost_acks")),
        n(w.wallet("faulted")),
        n(w.portal("filed")),
        n(r.portal_changes),
        n(w.portal("duplicates")),
        n(w.portal("lost_acks")),
        n(w.portal("faulted")),
        r.lag.get(motcua_schemas::component::PORTAL_SYNC).copied().unwrap_or(-1)
    );
    if let Some((bills, failures, duplicates)) = r.gateway {
        let _ = write!(
            h,
            "<tr><th>payment gateway</th><th></th></tr><tr><td>bills presented</td><td>{}</td></tr>\
             <tr><td>first attempts failed (paid on a second)</td><td>{}</td></tr>\
             <tr><td>confirmations sent twice</td><td>{}</td></tr>",
            n(bills),
            n(failures),
            n(duplicates)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Workers</h2><table><tr><th>stage (consumer group)</th><th>consumed</th><th>produced</th><th>dead-lettered</th><th>busy</th><th>lag at the end</th></tr>");
    for st in &r.stages {
        let _ = write!(
            h,
            "<tr><td>{} ({}motcua-{})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&st.stage),
            esc(&r.settings.topic_prefix),
            esc(&st.stage),
            n(st.consumed),
            n(st.produced),
            n(st.dead_lettered),
            st.busy_secs.map_or("–".to_owned(), |b| format!("{b:.1} s")),
            r.lag.get(&st.stage).map_or("–".to_owned(), |l| n(*l as u64)),
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Checked against the database</h2><table><tr><th>figure</th><th>report</th><th>database</th><th>counted from</th><th></th></tr>");
    for c in &r.checks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&c.figure),
            c.report,
            c.database,
            esc(&c.source),
            if c.ok { "ok" } else { "bad" },
            if c.ok { "equal" } else { "DIFFERS" }
        );
    }
    h.push_str("</table>");

    let _ = write!(
        h,
        r#"<footer>Broker: {}. Store: {}. Seed {}, {} partitions per topic. Faults: registry {:.1} % errors at {} ms median latency; gateway {:.1} % failed first payments, {:.1} % duplicate confirmations; {:.1} % defective and {:.1} % malformed submissions; officers late on {:.1} %. Publishing took {:.1} s; the whole run {:.1} s of wall time. Figures come from an observer reading every topic (broker timestamps); the checks count rows in the projection and the stores. Dossiers are synthetic; units are the official 2025 list.</footer></main></body></html>"#,
        esc(&s.broker),
        esc(&s.store),
        s.seed,
        s.partitions,
        s.registry_error_rate * 100.0,
        s.registry_latency_ms,
        s.gateway_failure_rate * 100.0,
        s.gateway_duplicate_rate * 100.0,
        s.defect_rate * 100.0,
        s.malformed_rate * 100.0,
        s.late_rate * 100.0,
        r.publish_secs,
        r.wall_secs,
    );
    h
}
