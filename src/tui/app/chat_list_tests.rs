//! The saved-chats overlay driven by keys: search, rename, delete with confirmation, undo,
//! trash, export and import commands.

use crossterm::event::KeyCode;

use super::chat_list::ListMode;
use super::tests::{app, ctrl, key, type_text};
use super::*;
use crate::store::{ChatSummary, ExportFormat, SearchText, TrashedChat};

fn summary(id: &str, title: &str, text: &str) -> ChatSummary {
    ChatSummary {
        id: id.into(),
        title: title.into(),
        updated: "2026-12-01T10:00:00Z".into(),
        created: "2026-11-30T09:00:00Z".into(),
        messages: 2,
        text: SearchText::new(text),
    }
}

fn listed() -> App {
    let mut app = app();
    app.show_chat_list(vec![
        summary("a", "Rust lifetimes", "what does 'a mean"),
        summary("b", "Dinner", "a risotto with MUSHROOMS"),
        summary("test-chat", "this one", "open chat"),
    ]);
    app
}

fn list(app: &App) -> &chat_list::ChatList {
    match &app.overlay {
        Overlay::Chats(list) => list,
        other => panic!("no chat list: {other:?}"),
    }
}

fn selected_id(app: &App) -> String {
    list(app)
        .selected_chat()
        .map(|c| c.id.clone())
        .unwrap_or_default()
}

#[test]
fn typing_filters_titles_and_content_and_enter_opens_the_match() {
    let mut app = listed();
    type_text(&mut app, "mushroom");
    let l = list(&app);
    assert_eq!(l.query, "mushroom");
    assert_eq!(l.hits.len(), 1);
    assert_eq!(selected_id(&app), "b");
    let snippet = l.hits[0].snippet.as_ref().expect("a content match");
    assert_eq!(snippet.matched, "MUSHROOM");
    // 'j' and 'd' type now: they are not list keys.
    app.update(key(KeyCode::Backspace));
    assert_eq!(list(&app).query, "mushroo");
    // Esc clears the search first, then closes.
    app.update(key(KeyCode::Esc));
    assert_eq!(list(&app).hits.len(), 3);
    type_text(&mut app, "RUST");
    assert_eq!(selected_id(&app), "a");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::OpenChat("a".into())]
    );
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn delete_asks_first_and_ctrl_z_undoes() {
    let mut app = listed();
    // The list opens on the open chat.
    assert_eq!(selected_id(&app), "test-chat");
    app.update(key(KeyCode::Home));
    app.update(key(KeyCode::Down));
    assert_eq!(selected_id(&app), "b");
    assert!(app.update(key(KeyCode::Delete)).is_empty());
    assert_eq!(list(&app).mode, ListMode::ConfirmDelete);
    // Any other key keeps it.
    assert!(app.update(key(KeyCode::Char('n'))).is_empty());
    assert_eq!(app.notice.as_deref(), Some("nothing deleted"));
    app.update(key(KeyCode::Delete));
    assert_eq!(
        app.update(key(KeyCode::Char('y'))),
        vec![Effect::DeleteChat("b".into())]
    );
    // The driver lists again and reports the trash entry.
    app.show_chat_list(vec![summary("a", "Rust lifetimes", "")]);
    app.chat_trashed(TrashedChat {
        entry: "1-b".into(),
        id: "b".into(),
        title: "Dinner".into(),
        deleted_unix_ms: 1,
    });
    assert_eq!(
        app.notice.as_deref(),
        Some("'Dinner' moved to the trash (Ctrl+Z undoes; kept 30 days)")
    );
    assert_eq!(
        app.update(ctrl('z')),
        vec![Effect::RestoreChat("1-b".into())]
    );
    app.chat_restored("b", vec![summary("b", "Dinner", ""), summary("a", "R", "")]);
    assert_eq!(selected_id(&app), "b");
    assert_eq!(app.notice.as_deref(), Some("restored 'Dinner'"));
    assert!(app.update(ctrl('z')).is_empty());
    assert_eq!(app.notice.as_deref(), Some("nothing to undo"));
}

#[test]
fn the_open_chat_is_not_deleted() {
    let mut app = listed();
    app.update(key(KeyCode::End));
    assert_eq!(selected_id(&app), "test-chat");
    assert!(app.update(key(KeyCode::Delete)).is_empty());
    assert_eq!(list(&app).mode, ListMode::Browse);
    assert_eq!(
        app.notice.as_deref(),
        Some("this chat is open: start a new chat to delete it")
    );
}

#[test]
fn f2_renames_in_place() {
    let mut app = listed();
    app.update(key(KeyCode::Home));
    app.update(key(KeyCode::F(2)));
    assert_eq!(
        list(&app).mode,
        ListMode::Rename {
            title: "Rust lifetimes".into()
        }
    );
    for _ in 0.."lifetimes".len() {
        app.update(key(KeyCode::Backspace));
    }
    type_text(&mut app, "borrows");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::RenameChat {
            id: "a".into(),
            title: "Rust borrows".into()
        }]
    );
    // An empty title is refused and the field stays.
    app.update(key(KeyCode::F(2)));
    for _ in 0..20 {
        app.update(key(KeyCode::Backspace));
    }
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(matches!(list(&app).mode, ListMode::Rename { .. }));
    app.update(key(KeyCode::Esc));
    assert_eq!(list(&app).mode, ListMode::Browse);
    // The open chat is renamed here and saved.
    app.update(key(KeyCode::End));
    app.update(key(KeyCode::F(2)));
    type_text(&mut app, "!");
    let effects = app.update(key(KeyCode::Enter));
    assert_eq!(app.meta.title, "this one!");
    assert!(matches!(effects.as_slice(), [Effect::Save(chat)] if chat.meta.title == "this one!"));
    assert_eq!(
        list(&app).selected_chat().map(|c| c.title.as_str()),
        Some("this one!")
    );
}

#[test]
fn ctrl_t_shows_the_trash_and_enter_restores() {
    let mut app = listed();
    assert_eq!(app.update(ctrl('t')), vec![Effect::ListTrash]);
    app.show_trash(vec![TrashedChat {
        entry: "5-old".into(),
        id: "old".into(),
        title: "Old".into(),
        deleted_unix_ms: 5,
    }]);
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::RestoreChat("5-old".into())]
    );
    app.update(key(KeyCode::Esc));
    assert_eq!(list(&app).mode, ListMode::Browse);
}

#[test]
fn export_picks_the_format_from_the_name_or_the_flag() {
    let mut app = app();
    let request = |effects: Vec<Effect>| match effects.as_slice() {
        [Effect::Export(request)] => (request.format, request.path.clone(), request.model.clone()),
        other => panic!("{other:?}"),
    };
    type_text(&mut app, "/export ~/chat.json");
    let (format, path, model) = request(app.update(key(KeyCode::Enter)));
    assert_eq!(format, ExportFormat::HarmonyJson);
    assert_eq!(path.as_deref(), Some(std::path::Path::new("~/chat.json")));
    assert_eq!(model.as_deref(), Some("demo"));
    type_text(&mut app, "/export --format md notes.json");
    assert_eq!(
        request(app.update(key(KeyCode::Enter))).0,
        ExportFormat::Markdown
    );
    type_text(&mut app, "/export");
    assert_eq!(
        request(app.update(key(KeyCode::Enter))),
        (ExportFormat::Markdown, None, Some("demo".into()))
    );
}

#[test]
fn import_needs_a_file() {
    let mut app = app();
    type_text(&mut app, "/import");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(
        app.notice.as_deref(),
        Some("usage: /import FILE (harmony JSON or an ossterm Markdown export)")
    );
    type_text(&mut app, "/import ~/x.json");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::Import("~/x.json".into())]
    );
}
