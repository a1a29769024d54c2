//! `bk images`: the local image store as `docker images` shows it —
//! REPOSITORY, TAG, IMAGE ID (the config digest, 12 digits), CREATED
//! (the config's time, relative) and SIZE (the bytes the image's blobs
//! take in the content store, compressed, in Docker's decimal units),
//! newest first. `-q` prints only IDs, `--digests` adds the manifest
//! digest, `--no-trunc` shows whole IDs; `bk images app` or
//! `bk images app:1` shows only that repository or name.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::local_images::{familiar_repository, short_id, LocalImages};
use crate::image::Reference;
use crate::imagestore;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub filter: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the manifest digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate IDs
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    created: Option<i64>,
    size: u64,
}

pub fn run(args: ImagesArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let local = LocalImages::open(root)?;
    // As docker: a name without a tag means every tag of the repository.
    let filter = args
        .filter
        .as_deref()
        .map(|f| {
            Reference::parse_normalized(f)
                .map_err(|e| anyhow::anyhow!("invalid reference {f:?}: {e}"))
        })
        .transpose()?;
    let mut rows = Vec::new();
    for tagged in local.names.list()? {
        if let Some(want) = &filter {
            let tag_ok = want.tag.is_none() || want.tag == tagged.name.tag;
            if want.name() != tagged.name.name() || !tag_ok {
                continue;
            }
        }
        // An image whose blobs cannot be read is still listed, so that
        // it can be seen and removed.
        let image = imagestore::read_image(&local.content, &tagged.manifest);
        let (id, created, size) = match &image {
            Ok(image) => (
                image.id().to_string(),
                image.config.created.as_deref().and_then(parse_rfc3339),
                image.size(),
            ),
            Err(_) => ("<unreadable>".to_string(), None, tagged.manifest.size),
        };
        rows.push(Row {
            repository: familiar_repository(&tagged.name),
            tag: tagged.name.tag.clone().unwrap_or_else(|| "<none>".into()),
            digest: tagged.manifest.digest.clone(),
            id,
            created,
            size,
        });
    }
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)))
    });
    let id = |r: &Row| {
        if args.no_trunc || r.id.starts_with('<') {
            r.id.clone()
        } else {
            short_id(&r.id)
        }
    };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for row in &rows {
            writeln!(out, "{}", id(row))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_secs();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    table.push(header.into_iter().map(String::from).collect());
    for row in &rows {
        let mut cells = vec![row.repository.clone(), row.tag.clone()];
        if args.digests {
            cells.push(row.digest.clone());
        }
        cells.push(id(row));
        cells.push(match row.created {
            Some(t) => format!("{} ago", human_duration(now.saturating_sub(t))),
            None => "N/A".into(),
        });
        cells.push(human_size(row.size));
        table.push(cells);
    }
    write!(out, "{}", layout(&table))?;
    Ok(ExitCode::SUCCESS)
}

/// Columns as Docker's tabwriter lays them out: each at least 10 wide,
/// three spaces of padding, the last unpadded.
fn layout(table: &[Vec<String>]) -> String {
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
                .saturating_add(3)
                .max(10)
        })
        .collect();
    let mut text = String::new();
    for row in table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}", width = widths[c]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Docker's `units.HumanDuration`.
fn human_duration(secs: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}s");
    let hours = secs / 3600;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => plural(s, "second"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => plural(s / 60, "minute"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => plural(hours, "hour"),
        _ if hours < 24 * 7 * 2 => plural(hours / 24, "day"),
        _ if hours < 24 * 30 * 2 => plural(hours / 24 / 7, "week"),
        _ if hours < 24 * 365 * 2 => plural(hours / 24 / 30, "month"),
        _ => plural(hours / 24 / 365, "year"),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units,
/// three significant digits, trailing zeros dropped (`3.31kB`, `1MB`).
fn human_size(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

/// Seconds since the epoch of an RFC 3339 time
/// (`2023-11-14T22:13:20Z`, fractions and offsets allowed).
fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => return None,
    };
    let mut c = clock.splitn(3, ':');
    let hour: i64 = c.next()?.parse().ok()?;
    let minute: i64 = c.next()?.parse().ok()?;
    let second: i64 = c.next()?.split('.').next()?.parse().ok()?;
    let offset_secs = match offset.as_bytes().first() {
        Some(b'Z' | b'z') => 0,
        Some(sign) => {
            let (h, m) = offset[1..].split_once(':')?;
            let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        None => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn sizes_and_durations_read_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(3306), "3.31kB");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(7_050_000), "7.05MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(45), "45 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(53 * 365 * 86_400), "53 years");
    }

    #[test]
    fn columns_are_padded_like_docker() {
        let table = vec![
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["a".into(), "latest".into(), "1kB".into()],
        ];
        assert_eq!(
            layout(&table),
            "REPOSITORY   TAG       SIZE\na            latest    1kB\n"
        );
    }
}
