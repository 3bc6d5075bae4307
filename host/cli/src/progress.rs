//! A progress line for long-running commands: redrawn in place on a terminal, one line per
//! change otherwise (a log file or a pipe), so progress never runs together into one line.

use std::io::{IsTerminal, Write};

pub struct Line {
    terminal: bool,
    last: String,
}

impl Line {
    /// A progress line on standard error.
    pub fn stderr() -> Line {
        Line {
            terminal: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    /// Shows `text` as the current progress; unchanged text is not shown again.
    pub fn show(&mut self, text: &str) {
        if text == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{text}")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
        self.last = text.to_string();
    }

    /// Ends the line (on a terminal, moves past it).
    pub fn done(&mut self) {
        if self.terminal && !self.last.is_empty() {
            eprintln!();
        }
        self.last.clear();
    }
}
