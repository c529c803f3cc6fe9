//! Where the chat and reasoning panes are scrolled to. A pane follows its newest text until the
//! user scrolls up; from then on its position is held from the top, so text streaming in below
//! does not move what the user is reading. Scrolling back to the bottom follows again.

/// What the last draw of a pane held: its content's wrapped line count and its inner height.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaneView {
    pub total_lines: usize,
    pub height: usize,
}

impl PaneView {
    /// The first visible line when the pane shows its bottom.
    fn bottom_top_line(self) -> usize {
        self.total_lines.saturating_sub(self.height)
    }
}

/// A pane's scroll position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaneScroll {
    /// The first visible line, counted from the top; `None` follows the newest text.
    top_line: Option<usize>,
    /// The content's line count when the user scrolled away from the bottom (more lines since
    /// then means new text arrived below).
    lines_when_left: usize,
}

impl PaneScroll {
    /// True while the pane follows its newest text.
    pub fn follows(&self) -> bool {
        self.top_line.is_none()
    }

    /// Scrolls `lines` up, stopping at the first line.
    pub fn up(&mut self, lines: usize, view: PaneView) {
        if view.total_lines <= view.height {
            // Everything fits: there is nothing above to show.
            return;
        }
        let top = match self.top_line {
            Some(top) => top.min(view.bottom_top_line()),
            None => {
                self.lines_when_left = view.total_lines;
                view.bottom_top_line()
            }
        };
        self.top_line = Some(top.saturating_sub(lines));
    }

    /// Scrolls `lines` down; reaching the bottom follows the newest text again.
    pub fn down(&mut self, lines: usize, view: PaneView) {
        if let Some(top) = self.top_line {
            let top = top.saturating_add(lines);
            self.top_line = (top < view.bottom_top_line()).then_some(top);
        }
    }

    /// Lines between the bottom of the content and the bottom of the pane, for content of
    /// `total_lines` in a pane of `height` rows.
    pub fn lines_from_bottom(&self, total_lines: usize, height: usize) -> usize {
        let view = PaneView {
            total_lines,
            height,
        };
        self.top_line
            .map_or(0, |top| view.bottom_top_line().saturating_sub(top))
    }

    /// Scrolls just enough to show lines `first .. first + count` (their start when they are
    /// taller than the pane); reaching the bottom follows the newest text again.
    pub fn reveal(&mut self, first: usize, count: usize, view: PaneView) {
        let bottom_top = view.bottom_top_line();
        let top = self.top_line.unwrap_or(bottom_top).min(bottom_top);
        let end = first.saturating_add(count);
        let top = if first < top || count > view.height {
            first
        } else if end > top + view.height {
            end - view.height
        } else {
            top
        };
        if top >= bottom_top {
            self.top_line = None;
        } else {
            if self.top_line.is_none() {
                self.lines_when_left = view.total_lines;
            }
            self.top_line = Some(top);
        }
    }

    /// True when text arrived below since the user scrolled up.
    pub fn new_text_below(&self, total_lines: usize) -> bool {
        !self.follows() && total_lines > self.lines_when_left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: PaneView = PaneView {
        total_lines: 100,
        height: 10,
    };

    #[test]
    fn scrolling_up_holds_the_position_while_text_grows() {
        let mut scroll = PaneScroll::default();
        scroll.up(5, VIEW);
        assert_eq!(scroll.lines_from_bottom(100, 10), 5);
        assert!(!scroll.new_text_below(100));
        // 20 more lines below: the same lines stay in view, 25 lines above the bottom.
        assert_eq!(scroll.lines_from_bottom(120, 10), 25);
        assert!(scroll.new_text_below(120));
    }

    #[test]
    fn scrolling_is_clamped_at_both_ends() {
        let mut scroll = PaneScroll::default();
        for _ in 0..10 {
            scroll.up(50, VIEW);
        }
        assert_eq!(scroll.lines_from_bottom(100, 10), 90, "at the top");
        scroll.down(8, VIEW);
        assert_eq!(scroll.lines_from_bottom(100, 10), 82, "one step down moves");
        scroll.down(1000, VIEW);
        assert!(scroll.follows(), "the bottom follows again");
        scroll.down(5, VIEW);
        assert!(scroll.follows());
    }

    #[test]
    fn revealing_lines_scrolls_only_as_far_as_needed() {
        let mut scroll = PaneScroll::default();
        scroll.reveal(95, 2, VIEW);
        assert!(scroll.follows(), "already in view at the bottom");
        scroll.reveal(40, 3, VIEW);
        assert_eq!(scroll.lines_from_bottom(100, 10), 50, "top line is 40");
        scroll.reveal(45, 8, VIEW);
        assert_eq!(
            scroll.lines_from_bottom(100, 10),
            47,
            "ends at the pane's bottom"
        );
        scroll.reveal(10, 30, VIEW);
        assert_eq!(
            scroll.lines_from_bottom(100, 10),
            80,
            "a tall one shows its start"
        );
        scroll.reveal(92, 8, VIEW);
        assert!(scroll.follows(), "the last lines follow again");
    }

    #[test]
    fn content_that_fits_does_not_scroll() {
        let mut scroll = PaneScroll::default();
        scroll.up(
            3,
            PaneView {
                total_lines: 5,
                height: 10,
            },
        );
        assert!(scroll.follows());
    }
}
