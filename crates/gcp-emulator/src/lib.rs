//! Stateful local emulator of the Google Cloud APIs litellm-operator uses. Filled in by the emulator issue.
