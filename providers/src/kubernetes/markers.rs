//! Step markers carried in band. Kubernetes gives one log per container, stdout and stderr
//! mixed, so the worker's wrapper cannot put its markers on a stream of their own as it does
//! under Docker. It writes them between steps as `RS flotilla-step <nonce> start <n> RS` and
//! `RS flotilla-step <nonce> end <n> <code> RS` (RS = 0x1e, no newline, so the output keeps
//! its bytes exactly); this scanner takes them out of the byte stream. The nonce is the
//! attempt's fencing token, so a marker-like sequence in a job's output is kept as output
//! unless the job goes out of its way to print the real one.

use crate::output_window::Frame;

const RS: u8 = 0x1e;
const MAX_MARKER_BYTES: usize = 128;

pub(crate) struct MarkerScanner {
    prefix: Vec<u8>,
    in_marker: bool,
    pending: Vec<u8>,
}

impl MarkerScanner {
    pub fn new(nonce: &str) -> MarkerScanner {
        MarkerScanner {
            prefix: format!("flotilla-step {nonce} ").into_bytes(),
            in_marker: false,
            pending: Vec::new(),
        }
    }

    /// Splits `bytes` into output and marker frames; bytes of a marker still open are held
    /// until the next call.
    pub fn split(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut output = Vec::new();
        for &b in bytes {
            if !self.in_marker {
                if b == RS {
                    self.in_marker = true;
                    self.pending.clear();
                } else {
                    output.push(b);
                }
                continue;
            }
            if b == RS {
                let body = std::mem::take(&mut self.pending);
                if let Some(marker) = body.strip_prefix(self.prefix.as_slice()) {
                    if !output.is_empty() {
                        frames.push(Frame::Output(std::mem::take(&mut output)));
                    }
                    let mut line = marker.to_vec();
                    line.push(b'\n');
                    frames.push(Frame::Markers(line));
                    self.in_marker = false;
                } else {
                    // Not a marker: the bytes were output, and this RS may open a real one.
                    output.push(RS);
                    output.extend_from_slice(&body);
                }
                continue;
            }
            self.pending.push(b);
            if self.pending.len() > MAX_MARKER_BYTES
                || !self
                    .prefix
                    .starts_with(&self.pending[..self.pending.len().min(self.prefix.len())])
            {
                output.push(RS);
                output.append(&mut self.pending);
                self.in_marker = false;
            }
        }
        if !output.is_empty() {
            frames.push(Frame::Output(output));
        }
        frames
    }

    /// At the end of the stream: what was held as a possible marker is output after all.
    pub fn finish(&mut self) -> Option<Frame> {
        if !std::mem::take(&mut self.in_marker) {
            return None;
        }
        let mut output = vec![RS];
        output.append(&mut self.pending);
        Some(Frame::Output(output))
    }
}

#[cfg(test)]
mod tests {
    use super::MarkerScanner;
    use crate::output_window::{Frame, OutputState};

    fn feed(state: &mut OutputState, scanner: &mut MarkerScanner, bytes: &[u8]) {
        for frame in scanner.split(bytes) {
            state.feed(frame);
        }
    }

    #[test]
    fn markers_split_across_chunks_leave_the_output_exact() {
        let mut s = OutputState::default();
        let mut m = MarkerScanner::new("7-42");
        feed(
            &mut s,
            &mut m,
            b"\x1eflotilla-step 7-42 start 0\x1e$ echo hi\nhi\n\x1eflotilla-st",
        );
        feed(
            &mut s,
            &mut m,
            b"ep 7-42 end 0 0\x1e\x1eflotilla-step 7-42 start 1\x1eno newline",
        );
        feed(&mut s, &mut m, b"\x1eflotilla-step 7-42 end 1 3\x1e");
        assert_eq!(s.data, b"$ echo hi\nhi\nno newline");
        assert_eq!(s.step_started, Some(1));
        assert_eq!(s.steps_finished, vec![(0, 0), (1, 3)]);
    }

    #[test]
    fn marker_like_bytes_with_another_nonce_stay_output() {
        let mut m = MarkerScanner::new("7-42");
        let frames = m.split(b"a\x1eflotilla-step 1-1 start 0\x1eb\x1ex");
        let out: Vec<u8> = frames
            .into_iter()
            .flat_map(|f| match f {
                Frame::Output(b) => b,
                Frame::Markers(_) => panic!("not a marker"),
            })
            .collect();
        assert_eq!(out, b"a\x1eflotilla-step 1-1 start 0\x1eb\x1ex");
    }
}
