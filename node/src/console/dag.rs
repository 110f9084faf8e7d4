//! A pipeline's jobs drawn as a graph: columns by depth (a job stands one column right of the
//! deepest job it needs), rows in the spec's order, edges from each need to its dependant.
//!
//! The layout is a pure function of the jobs and their needs, tested as data; `svg` renders it.
//! No layout library is worth its build for a DAG whose edges only ever point right.

use maud::{Markup, html};

/// Most jobs drawn; a larger pipeline is shown as its table alone (the limit is in
/// ARCHITECTURE.md's table).
pub const MAX_DRAWN_JOBS: usize = 500;

const BOX_W: u32 = 168;
const BOX_H: u32 = 40;
const COL_GAP: u32 = 56;
const ROW_GAP: u32 = 14;
const MARGIN: u32 = 8;

/// One job as the graph needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagJob {
    pub id: u64,
    pub name: String,
    /// Lowercase state (`pending`, `running`...), also the box's CSS class.
    pub state: String,
    /// Indexes into the job list of the jobs this one needs.
    pub needs: Vec<usize>,
}

/// Where each job's box goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `(column, row)` of each job, in the input's order.
    pub cells: Vec<(u32, u32)>,
    pub columns: u32,
    pub rows: u32,
}

/// Columns by depth, rows in order within a column. Needs that point at a later job or at
/// itself (which validation refuses, so only a corrupt record could hold one) are ignored
/// rather than looped on.
pub fn layout(jobs: &[DagJob]) -> Layout {
    let mut depth = vec![0u32; jobs.len()];
    // Needs precede their dependants in a validated spec, so one pass in order settles depths.
    for (i, job) in jobs.iter().enumerate() {
        depth[i] = job
            .needs
            .iter()
            .filter(|&&n| n < i)
            .map(|&n| depth[n] + 1)
            .max()
            .unwrap_or(0);
    }
    let columns = depth.iter().max().map_or(0, |d| d + 1);
    let mut next_row = vec![0u32; columns as usize];
    let cells: Vec<(u32, u32)> = depth
        .iter()
        .map(|&d| {
            let row = next_row[d as usize];
            next_row[d as usize] += 1;
            (d, row)
        })
        .collect();
    let rows = next_row.iter().copied().max().unwrap_or(0);
    Layout { cells, columns, rows }
}

fn origin((column, row): (u32, u32)) -> (u32, u32) {
    (MARGIN + column * (BOX_W + COL_GAP), MARGIN + row * (BOX_H + ROW_GAP))
}

/// The graph as inline SVG, each box a link to its job's page.
pub fn svg(jobs: &[DagJob]) -> Markup {
    let l = layout(jobs);
    let width = 2 * MARGIN + l.columns * BOX_W + l.columns.saturating_sub(1) * COL_GAP;
    let height = 2 * MARGIN + l.rows * BOX_H + l.rows.saturating_sub(1) * ROW_GAP;
    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" role="img" width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) aria-label="the pipeline's jobs and what each needs" {
            @for (i, job) in jobs.iter().enumerate() {
                @for &n in job.needs.iter().filter(|&&n| n < i) {
                    @let (x0, y0) = origin(l.cells[n]);
                    @let (x1, y1) = origin(l.cells[i]);
                    @let (sx, sy, ex, ey) = (x0 + BOX_W, y0 + BOX_H / 2, x1, y1 + BOX_H / 2);
                    @let mid = (sx + ex) / 2;
                    path.edge d=(format!("M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}")) {}
                }
            }
            @for (i, job) in jobs.iter().enumerate() {
                @let (x, y) = origin(l.cells[i]);
                a href=(format!("/ui/jobs/{}", job.id)) {
                    g class=(format!("node {}", job.state)) data-job=(job.id) {
                        title { (job.name) " — " (job.state) }
                        rect x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="6" {}
                        text x=(x + 10) y=(y + 17) { (truncate(&job.name, 20)) }
                        text.state x=(x + 10) y=(y + 32) { (job.state) }
                    }
                }
            }
        }
    }
}

fn truncate(name: &str, chars: usize) -> String {
    if name.chars().count() <= chars {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(chars - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, needs: &[usize]) -> DagJob {
        DagJob {
            id: 1,
            name: name.into(),
            state: "pending".into(),
            needs: needs.to_vec(),
        }
    }

    #[test]
    fn a_job_stands_right_of_the_deepest_job_it_needs() {
        // build -> (test, lint) -> deploy; docs alone.
        let jobs = [
            job("build", &[]),
            job("test", &[0]),
            job("lint", &[0]),
            job("docs", &[]),
            job("deploy", &[1, 2]),
        ];
        let l = layout(&jobs);
        assert_eq!(l.cells, vec![(0, 0), (1, 0), (1, 1), (0, 1), (2, 0)]);
        assert_eq!((l.columns, l.rows), (3, 2));
    }

    #[test]
    fn needs_that_point_forward_or_at_themselves_are_ignored() {
        let jobs = [job("a", &[0, 1]), job("b", &[])];
        assert_eq!(layout(&jobs).cells, vec![(0, 0), (0, 1)]);
        assert_eq!(layout(&[]).cells, Vec::<(u32, u32)>::new());
    }

    #[test]
    fn the_svg_links_each_job_escapes_its_name_and_draws_each_edge() {
        let mut jobs = vec![job("<build>", &[]), job("test", &[0])];
        jobs[1].id = 2;
        let out = svg(&jobs).into_string();
        assert!(out.contains("&lt;build&gt;") && !out.contains("<build>"), "{out}");
        assert!(out.contains("href=\"/ui/jobs/2\""));
        assert_eq!(out.matches("class=\"edge\"").count(), 1);
        assert_eq!(out.matches("<rect").count(), 2);
        assert!(truncate("a-very-long-job-name-indeed", 10).ends_with('…'));
    }
}
