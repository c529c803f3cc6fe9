//! Mouse clicks: a left click focuses the pane under it (the wheel scrolls, see
//! `App::mouse`). With mouse capture on, the terminal selects text on Shift+drag.

use crossterm::event::MouseEvent;
use ratatui::layout::Position;

use super::{App, Pane};

impl App {
    /// Focuses the pane under the click, as last drawn; a click elsewhere changes nothing.
    pub(super) fn focus_at(&mut self, mouse: MouseEvent) {
        let at = Position::new(mouse.column, mouse.row);
        let rects = self.rects.get();
        let pane = if rects.input.contains(at) {
            Pane::Input
        } else if rects.chat.contains(at) {
            Pane::Chat
        } else if rects.reasoning.is_some_and(|r| r.contains(at)) {
            Pane::Reasoning
        } else if rects.metrics.contains(at) {
            Pane::Metrics
        } else {
            return;
        };
        self.focus = pane;
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyModifiers, MouseButton, MouseEventKind};

    use super::super::Input;
    use super::super::tests::app;
    use super::*;

    fn click(column: u16, row: u16) -> Input {
        Input::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    }

    fn draw(app: &App) {
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40))
            .expect("a test backend never fails");
        terminal
            .draw(|frame| crate::tui::ui::draw(frame, app))
            .expect("a test backend never fails");
    }

    #[test]
    fn a_left_click_focuses_the_pane_under_it() {
        let mut app = app();
        draw(&app);
        let rects = app.rects.get();
        let inside = |r: ratatui::layout::Rect| (r.x + 2, r.y + 1);
        for (rect, pane) in [
            (rects.chat, Pane::Chat),
            (
                rects.reasoning.expect("120 columns show reasoning"),
                Pane::Reasoning,
            ),
            (rects.metrics, Pane::Metrics),
            (rects.input, Pane::Input),
        ] {
            let (column, row) = inside(rect);
            app.update(click(column, row));
            assert_eq!(app.focus, pane, "clicked at {column},{row}");
        }
        // The status line is no pane: focus stays.
        app.update(click(5, 0));
        assert_eq!(app.focus, Pane::Input);
        // A right click does nothing.
        let (column, row) = inside(rects.chat);
        app.update(Input::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Right),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        }));
        assert_eq!(app.focus, Pane::Input);
    }
}
