//! The printed table (Markdown, so BENCHMARKS.md can take it as is) and the goal checks.

use crate::{Args, Cell, Target, size_label};

fn find(cells: &[Cell], t: Target, payload: usize, inflight: usize) -> Option<&Cell> {
    cells
        .iter()
        .find(|c| c.target == t && c.payload == payload && c.inflight == inflight)
}

fn best_nginx(
    cells: &[Cell],
    payload: usize,
    inflight: usize,
    key: impl Fn(&Cell) -> f64,
    lower_is_better: bool,
) -> Option<(&Cell, f64)> {
    [Target::Nginx1, Target::Nginx2]
        .into_iter()
        .filter_map(|t| find(cells, t, payload, inflight))
        .map(|c| (c, key(c)))
        .filter(|(_, v)| v.is_finite())
        .min_by(|a, b| {
            let o = a.1.total_cmp(&b.1);
            if lower_is_better { o } else { o.reverse() }
        })
}

fn proxy_cpu(c: &Cell) -> f64 {
    c.per_call_us(c.proxy_cpu_s)
}

fn total_cpu(c: &Cell) -> f64 {
    c.per_call_us(c.proxy_cpu_s + c.node_cpu_s)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub fn print(
    args: &Args,
    cells: &[Cell],
    scale: &[Cell],
    idle_rss: &[(String, u64)],
    load_rss: &[(String, u64)],
) {
    println!("\n## Results\n");
    println!(
        "{} s measured per cell and round (+{} s warm-up), {} interleaved rounds; CPU from /proc (user+system), warm-up excluded.\n",
        args.seconds, args.warmup, args.rounds
    );
    println!(
        "| payload | in flight | target | req/s | p50 µs | p99 µs | p99.9 µs | errors | proxy CPU µs/call | node CPU µs/call | proxy+node µs/call | node conns |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            size_label(c.payload),
            c.inflight,
            c.target.label(),
            c.stats.rps(),
            c.p(0.5),
            c.p(0.99),
            c.p(0.999),
            c.stats.errors,
            proxy_cpu(c),
            c.per_call_us(c.node_cpu_s),
            total_cpu(c),
            c.upstream_conns
        );
    }
    for c in cells.iter().chain(scale) {
        if let Some(e) = &c.stats.first_error {
            println!(
                "\nfirst error for {} ({} B, {} in flight): {e}",
                c.target.label(),
                c.payload,
                c.inflight
            );
        }
    }

    println!("\n## Ratios (gateway vs the better nginx configuration for each figure)\n");
    println!(
        "| payload | in flight | gw/nginx proxy CPU | gw/nginx proxy+node CPU | gw/nginx req/s | gw/direct req/s | added p50 µs gw | added p50 µs nginx |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut goals: Vec<(String, bool)> = Vec::new();
    let mut pairs: Vec<(usize, usize)> = cells.iter().map(|c| (c.payload, c.inflight)).collect();
    pairs.dedup();
    for (payload, inflight) in pairs {
        let (Some(gw), Some(direct)) = (
            find(cells, Target::Gateway, payload, inflight),
            find(cells, Target::Direct, payload, inflight),
        ) else {
            continue;
        };
        let n_cpu = best_nginx(cells, payload, inflight, proxy_cpu, true);
        let n_total = best_nginx(cells, payload, inflight, total_cpu, true);
        let n_rps = best_nginx(cells, payload, inflight, |c| c.stats.rps(), false);
        let n_p50 = best_nginx(cells, payload, inflight, |c| c.p(0.5) as f64, true);
        let ratio = |a: f64, b: Option<(&Cell, f64)>| b.map(|(_, v)| a / v);
        let fmt = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}×"));
        let cpu_r = ratio(proxy_cpu(gw), n_cpu);
        let total_r = ratio(total_cpu(gw), n_total);
        let rps_r = ratio(gw.stats.rps(), n_rps);
        let added_gw = gw.p(0.5) as f64 - direct.p(0.5) as f64;
        let added_ng = n_p50.map(|(_, v)| v - direct.p(0.5) as f64);
        println!(
            "| {} | {} | {} | {} | {} | {:.2}× | {:.0} | {} |",
            size_label(payload),
            inflight,
            fmt(cpu_r),
            fmt(total_r),
            fmt(rps_r),
            gw.stats.rps() / direct.stats.rps(),
            added_gw,
            added_ng.map_or("-".into(), |v| format!("{v:.0}"))
        );
        if n_cpu.is_none() {
            continue;
        }
        if payload <= 4096 {
            goals.push((
                format!(
                    "gateway CPU/call ≤ 0.8× nginx at {} / {inflight} in flight, zero errors: {}",
                    size_label(payload),
                    fmt(cpu_r)
                ),
                cpu_r.is_some_and(|r| r <= 0.8) && gw.stats.errors == 0,
            ));
            goals.push((
                format!(
                    "proxy+node CPU/call ≤ 0.8× nginx at {} / {inflight} in flight: {}",
                    size_label(payload),
                    fmt(total_r)
                ),
                total_r.is_some_and(|r| r <= 0.8),
            ));
        }
        if inflight >= 64 {
            goals.push((
                format!(
                    "throughput ≥ 1.25× nginx at {} / {inflight} in flight: {}",
                    size_label(payload),
                    fmt(rps_r)
                ),
                rps_r.is_some_and(|r| r >= 1.25),
            ));
        }
        if inflight == 1 {
            goals.push((
                format!(
                    "added p50 ≤ nginx's at {} / 1 in flight: {added_gw:.0} µs vs {} µs",
                    size_label(payload),
                    added_ng.map_or("-".into(), |v| format!("{v:.0}"))
                ),
                added_ng.is_some_and(|n| added_gw <= n),
            ));
        }
    }

    if let (Some(a), Some(b)) = (
        scale.iter().find(|c| c.target == Target::Gateway),
        scale.iter().find(|c| c.target == Target::Gateway3212),
    ) {
        let r = b.stats.rps() / a.stats.rps();
        println!("\n## Route scale (256 B, 64 in flight)\n");
        println!("| routes | req/s | p50 µs | p99 µs | proxy CPU µs/call | errors |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for (n, c) in [(34, a), (3212, b)] {
            println!(
                "| {n} | {:.0} | {} | {} | {:.1} | {} |",
                c.stats.rps(),
                c.p(0.5),
                c.p(0.99),
                proxy_cpu(c),
                c.stats.errors
            );
        }
        goals.push((
            format!("3,212 routes within 5 % of 34 routes: {:.3}×", r),
            (r - 1.0).abs() <= 0.05 || r > 1.0,
        ));
    }
    if !idle_rss.is_empty() {
        println!("\n## Gateway memory\n");
        println!("| process | RSS idle | peak RSS after load |");
        println!("|---|---:|---:|");
        for (name, idle) in idle_rss {
            let peak = load_rss
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, p)| *p);
            println!(
                "| {name} | {:.1} MiB | {:.1} MiB |",
                *idle as f64 / 1024.0,
                peak as f64 / 1024.0
            );
            goals.push((
                format!(
                    "{name} RSS < 64 MiB under load: {:.1} MiB",
                    peak as f64 / 1024.0
                ),
                peak < 64 * 1024,
            ));
        }
    }
    println!("\n## Goals\n");
    for (text, ok) in &goals {
        println!("- {}: {text}", verdict(*ok));
    }
}
