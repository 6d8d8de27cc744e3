//! Zooming and panning a matrix drawn in a scene: the mouse wheel (or a pinch) zooms at the
//! pointer, dragging pans, double-click fits; buttons and keys zoom at the centre.

use egui::Vec2;

use crate::render::matrix::{MatrixGeometry, MatrixZoom};
use crate::render::scene::Rect;
use crate::ui::scene::SceneResponse;
use crate::ui::symbol_button;

/// How much one button press or key zooms.
const ZOOM_STEP: f32 = 1.5;
/// Zoom per point of mouse-wheel scroll: a wheel notch (about 50 points) zooms by about 1.1×.
const WHEEL_ZOOM_PER_POINT: f32 = 0.002;

/// Applies the pointer's wheel, drag and double-click over the matrix at `geometry` (in the
/// painted scene `shown`) to `zoom`, asking for a repaint when it changed.
pub fn interact(
    ui: &egui::Ui,
    shown: &SceneResponse,
    geometry: &MatrixGeometry,
    zoom: &mut MatrixZoom,
) {
    let max_zoom = MatrixGeometry::max_zoom(geometry.viewport.width(), geometry.tokens);
    interact_area(ui, shown, geometry.viewport, max_zoom, zoom);
}

/// Applies the pointer's wheel, drag and double-click over `area` (in the painted scene
/// `shown`) to `zoom`, up to `max_zoom`, asking for a repaint when it changed.
pub fn interact_area(
    ui: &egui::Ui,
    shown: &SceneResponse,
    area: Rect,
    max_zoom: f32,
    zoom: &mut MatrixZoom,
) {
    let before = *zoom;
    let (width, height) = (area.width().max(1.0), area.height().max(1.0));
    let pointer = shown.pointer.filter(|p| area.contains(*p));
    if let Some(point) = pointer {
        let (scroll, pinch) = ui.input(|input| (input.smooth_scroll_delta(), input.zoom_delta()));
        let factor = pinch * (scroll.y * WHEEL_ZOOM_PER_POINT).exp();
        if factor != 1.0 {
            let anchor = (
                (point.x - area.min.x) / width,
                (point.y - area.min.y) / height,
            );
            zoom.zoom_at(factor, anchor, max_zoom);
            ui.ctx()
                .input_mut(|input| input.smooth_scroll_delta = Vec2::ZERO);
        }
    }
    let response = &shown.response;
    if response.dragged() && !zoom.is_fit() {
        let delta = response.drag_delta();
        zoom.pan(
            -delta.x / (width * zoom.zoom),
            -delta.y / (height * zoom.zoom),
        );
    }
    if response.double_clicked() {
        *zoom = MatrixZoom::default();
    }
    // Buttons and keys zoom without knowing the viewport: hold them to its largest zoom here.
    if zoom.zoom > max_zoom {
        zoom.zoom_at(max_zoom / zoom.zoom, (0.5, 0.5), max_zoom);
    }
    if !zoom.is_fit() && pointer.is_some() {
        ui.ctx().set_cursor_icon(if response.dragged() {
            egui::CursorIcon::Grabbing
        } else {
            egui::CursorIcon::Grab
        });
    }
    if *zoom != before {
        ui.ctx().request_repaint();
    }
}

/// `+` and `-` zoom at the centre, `0` fits, while no text field has the keyboard.
pub fn zoom_keys(ui: &egui::Ui, zoom: &mut MatrixZoom) {
    use egui::{Key, Modifiers};
    if ui.ctx().egui_wants_keyboard_input() {
        return;
    }
    let (zoom_in, zoom_out, fit) = ui.input_mut(|input| {
        (
            input.consume_key(Modifiers::NONE, Key::Plus)
                || input.consume_key(Modifiers::SHIFT, Key::Plus)
                || input.consume_key(Modifiers::NONE, Key::Equals),
            input.consume_key(Modifiers::NONE, Key::Minus),
            input.consume_key(Modifiers::NONE, Key::Num0),
        )
    });
    if zoom_in {
        zoom.zoom_at(ZOOM_STEP, (0.5, 0.5), f32::INFINITY);
    }
    if zoom_out {
        zoom.zoom_at(1.0 / ZOOM_STEP, (0.5, 0.5), f32::INFINITY);
    }
    if fit {
        *zoom = MatrixZoom::default();
    }
}

/// Zoom buttons for a matrix: out, in, and fit, with the current zoom.
pub fn zoom_controls(ui: &mut egui::Ui, zoom: &mut MatrixZoom) {
    ui.horizontal(|ui| {
        if symbol_button(
            ui,
            "−",
            "Zoom out",
            "Zoom out (- key, or the mouse wheel over the map)",
        )
        .clicked()
        {
            zoom.zoom_at(1.0 / ZOOM_STEP, (0.5, 0.5), f32::INFINITY);
        }
        if symbol_button(
            ui,
            "+",
            "Zoom in",
            "Zoom in (+ key, or the mouse wheel over the map)",
        )
        .clicked()
        {
            zoom.zoom_at(ZOOM_STEP, (0.5, 0.5), f32::INFINITY);
        }
        if ui
            .add_enabled(!zoom.is_fit(), egui::Button::new("Fit").small())
            .on_hover_text("Show the whole matrix (0 key, or double-click the map)")
            .clicked()
        {
            *zoom = MatrixZoom::default();
        }
        ui.weak(format!("{:.0}%", zoom.zoom * 100.0))
            .on_hover_text("Wheel over the map zooms at the pointer; drag to pan");
    });
}

/// The tooltip of a map's cell: who attends to whom, and the exact `what` (weight, difference);
/// masked cells (of layer `layer`'s masks, or a causal model's later keys when the map is not
/// one layer's) and a flow's rows not computed say so instead.
pub fn cell_tooltip(
    response: &egui::Response,
    analysis: &crate::model::Analysis,
    layer: Option<usize>,
    values: &[f32],
    (row, column): (usize, usize),
    what: &str,
) {
    let tokens = analysis.len();
    let Some(&weight) = values.get(row * tokens + column) else {
        return;
    };
    let (query, key) = (analysis.display_token(row), analysis.display_token(column));
    let later = analysis.causal && column > row;
    let outside = layer.is_some_and(|layer| analysis.is_outside_window(layer, row, column));
    response.clone().on_hover_ui_at_pointer(|ui| {
        if later || outside {
            ui.label(format!("{query} cannot attend to {key}"));
            ui.weak(if later {
                "masked: a causal model only sees earlier tokens".to_owned()
            } else {
                match layer.map(|layer| analysis.window(layer)) {
                    Some(crate::model::KeyWindow::Sliding(size)) => format!(
                        "outside the window: this layer's queries see only the last {size} tokens"
                    ),
                    Some(crate::model::KeyWindow::Local(half)) => format!(
                        "outside the window: this layer's queries see only tokens within {half} of themselves"
                    ),
                    _ => "outside the window".to_owned(),
                }
            });
            ui.weak(format!("query {row}, key {column}"));
            return;
        }
        if weight.is_nan() {
            ui.label(format!("No flow into {query} computed"));
            ui.weak("shift-click its row to add it to the selection");
            return;
        }
        ui.label(format!("{query} attends to {key}"));
        ui.monospace(format!("{what} {weight:.6}"));
        ui.weak(format!("query {row}, key {column}"));
    });
}
