//! fixbot-telegram: the Telegram front-end (being built).
