//! Values derived from results that take too long for the UI thread (a PCA, the divergence of
//! two models): each is computed on a thread of its own, for one key (the results it derives
//! from), and the UI is woken when it is ready.

use std::sync::mpsc::{self, Receiver, TryRecvError};

/// One background value and the key it was computed for.
pub struct Background<K, T> {
    state: State<K, T>,
}

enum State<K, T> {
    Idle,
    Computing {
        key: K,
        receiver: Receiver<Result<T, String>>,
    },
    Done {
        key: K,
        value: Result<T, String>,
    },
}

impl<K, T> Default for Background<K, T> {
    fn default() -> Self {
        Self { state: State::Idle }
    }
}

impl<K: PartialEq, T: Send + 'static> Background<K, T> {
    /// Makes sure the value for `key` is computed: the first call for a key starts `compute` on
    /// a new thread (forgetting any other key's value), later calls collect its answer. `waker`
    /// is asked for a repaint when the answer is ready. Cheap; call it every frame the value is
    /// wanted.
    pub fn request(
        &mut self,
        key: K,
        waker: &egui::Context,
        compute: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) {
        self.state = match std::mem::replace(&mut self.state, State::Idle) {
            State::Computing {
                key: current,
                receiver,
            } if current == key => match receiver.try_recv() {
                Ok(value) => State::Done { key, value },
                Err(TryRecvError::Empty) => State::Computing { key, receiver },
                Err(TryRecvError::Disconnected) => State::Done {
                    key,
                    value: Err("the background computation stopped".to_owned()),
                },
            },
            State::Done {
                key: current,
                value,
            } if current == key => State::Done {
                key: current,
                value,
            },
            _ => {
                let (sender, receiver) = mpsc::channel();
                let waker = waker.clone();
                let spawned = std::thread::Builder::new()
                    .name("bertscope-background".to_owned())
                    .spawn(move || {
                        // A receiver gone (the key changed) just means nobody waits any more.
                        let _ = sender.send(compute());
                        waker.request_repaint();
                    });
                match spawned {
                    Ok(_) => State::Computing { key, receiver },
                    Err(err) => State::Done {
                        key,
                        value: Err(format!("cannot start a thread ({err})")),
                    },
                }
            }
        };
    }

    /// The value for `key` once it is ready (or why it could not be computed).
    pub fn get(&self, key: &K) -> Option<Result<&T, &str>> {
        match &self.state {
            State::Done {
                key: current,
                value,
            } if current == key => Some(value.as_ref().map_err(String::as_str)),
            _ => None,
        }
    }

    /// Forgets the value (a thread still running finishes unheard).
    pub fn clear(&mut self) {
        self.state = State::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(background: &mut Background<u32, u32>, key: u32, ctx: &egui::Context) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            background.request(key, ctx, || Err("not the first closure".to_owned()));
            if let Some(value) = background.get(&key) {
                return *value.unwrap();
            }
            assert!(Instant::now() < deadline, "never answered");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn computes_once_per_key_off_the_calling_thread() {
        let ctx = egui::Context::default();
        let mut background = Background::default();
        let caller = std::thread::current().id();
        background.request(1, &ctx, move || {
            assert_ne!(std::thread::current().id(), caller);
            Ok(10)
        });
        assert_eq!(wait_for(&mut background, 1, &ctx), 10);
        assert!(background.get(&2).is_none(), "another key has no value yet");
        background.request(2, &ctx, || Ok(20));
        assert_eq!(wait_for(&mut background, 2, &ctx), 20);
        assert!(
            background.get(&1).is_none(),
            "a new key forgets the old value"
        );
        background.clear();
        assert!(background.get(&2).is_none());
    }
}
