//! `serve --config FILE`: a TOML file with the same keys as `serve`'s flags (`data-dir`, or
//! `data_dir`, for `--data-dir`). A flag beats its environment variable, which beats the file,
//! which beats the default: the file's values are handed to the parser as flags only for what
//! the command line and the environment left unset, so each is checked exactly as the flag
//! would be. An unknown key or a value of the wrong type is an error naming the key and the
//! file. `serve --print-config` prints the effective configuration, each value with its source.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// Flags that configure the reading itself, never set from a file.
const NOT_IN_FILES: [&str; 4] = ["config", "print-config", "help", "version"];

/// What a configuration file adds: the flags to append to the command line, and the keys
/// (flag names) whose values came from the file.
#[derive(Debug, Default, PartialEq)]
pub struct FromFile {
    /// `--key=value` (or `--key`) for each value the command line and environment left unset.
    pub args: Vec<OsString>,
    /// The flag names those came from.
    pub keys: BTreeSet<String>,
}

/// Reads `file` for the subcommand `cmd`, whose arguments so far parsed as `matches`.
pub fn read(cmd: &Command, matches: &ArgMatches, file: &Path) -> Result<FromFile, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("reading the config file {}: {e}", file.display()))?;
    parse(cmd, matches, &text, file)
}

/// As [`read`], with the file's contents given.
pub fn parse(cmd: &Command, matches: &ArgMatches, text: &str, file: &Path) -> Result<FromFile, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("the config file {} is not valid TOML: {e}", file.display()))?;
    let mut out = FromFile::default();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let bad = |why: String| format!("key {key:?} in the config file {}: {why}", file.display());
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()) && !NOT_IN_FILES.contains(&flag.as_str()))
            .ok_or_else(|| bad(format!("no such setting (`{} --help` lists them)", cmd.get_name())))?;
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let raw = match (&value, switch) {
            (toml::Value::Boolean(b), true) => {
                if *b && !given {
                    out.args.push(format!("--{flag}").into());
                    out.keys.insert(flag);
                }
                continue;
            }
            (_, true) => return Err(bad(format!("expected true or false, found {}", value.type_str()))),
            (toml::Value::String(s), false) => s.clone(),
            (toml::Value::Integer(i), false) => i.to_string(),
            (toml::Value::Float(f), false) => f.to_string(),
            (other, false) => return Err(bad(format!("expected a string or a number, found {}", other.type_str()))),
        };
        if !given {
            out.args.push(format!("--{flag}={raw}").into());
            out.keys.insert(flag);
        }
    }
    Ok(out)
}

/// What went wrong when the command line with the file's flags added did not parse, in terms
/// of the file's key when the error is about one of them (a value of the wrong type, say).
pub fn explain(error: &clap::Error, from_file: &FromFile, file: &Path) -> String {
    let message = error.to_string();
    let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
    let about = from_file.keys.iter().find(|k| {
        [format!("'--{k} <"), format!("'--{k}'"), format!("--{k}=")].iter().any(|p| message.contains(p.as_str()))
    });
    match about {
        Some(key) => format!("key {key:?} in the config file {}: {first}", file.display()),
        None => format!("{first} (with the config file {})", file.display()),
    }
}

/// The effective configuration of `cmd` as parsed into `matches`, as TOML a `--config` file
/// takes, each line saying where its value came from (`flag`, `env`, `file` or `default`).
pub fn effective(cmd: &Command, matches: &ArgMatches, from_file: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for arg in cmd.get_arguments() {
        let Some(flag) = arg.get_long().filter(|f| !NOT_IN_FILES.contains(f)) else { continue };
        let id = arg.get_id().as_str();
        let source = if from_file.contains(flag) {
            "file"
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "env",
                _ => "default",
            }
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = match (arg.get_action(), raw.as_slice()) {
            (ArgAction::SetTrue, _) => matches.get_flag(id).to_string(),
            (_, [one]) if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) && one.len() < 19 => one.clone(),
            (_, [one]) => toml_string(one),
            _ => {
                let _ = writeln!(out, "# {flag} is not set");
                continue;
            }
        };
        let _ = writeln!(out, "{flag} = {value}  # {source}");
    }
    out
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cmd() -> Command {
        Command::new("serve")
            .arg(Arg::new("data_dir").long("data-dir").default_value("data"))
            .arg(Arg::new("listen").long("listen").env("TEST_CONFIG_FILE_LISTEN").default_value("127.0.0.1:1"))
            .arg(Arg::new("max_memory").long("max-memory").value_parser(clap::value_parser!(u64)))
            .arg(Arg::new("insecure").long("insecure").action(ArgAction::SetTrue))
            .arg(Arg::new("config").long("config"))
    }

    fn from(args: &[&str], text: &str) -> Result<FromFile, String> {
        let c = cmd();
        let m = c.clone().try_get_matches_from(std::iter::once("serve").chain(args.iter().copied())).expect("args");
        parse(&c, &m, text, Path::new("node.toml"))
    }

    #[test]
    fn the_file_fills_in_only_what_flags_left_unset() {
        let got = from(&["--data-dir", "d1"], "data-dir = \"d2\"\nmax_memory = 1024\ninsecure = true\n").expect("read");
        assert_eq!(got.args, vec![OsString::from("--insecure"), OsString::from("--max-memory=1024")]);
        assert_eq!(got.keys, BTreeSet::from(["max-memory".to_string(), "insecure".to_string()]));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_the_file() {
        let e = from(&[], "data-dri = \"x\"").expect_err("unknown");
        assert!(e.contains("\"data-dri\"") && e.contains("node.toml") && e.contains("no such setting"), "{e}");
        // A value of the wrong type for its flag is found when the flags are parsed.
        let c = cmd();
        let m = c.clone().try_get_matches_from(["serve"]).expect("args");
        let file = parse(&c, &m, "max-memory = \"lots\"", Path::new("node.toml")).expect("a string is a value");
        let args = std::iter::once(OsString::from("serve")).chain(file.args.iter().cloned());
        let error = c.clone().try_get_matches_from(args).expect_err("not a number");
        let e = explain(&error, &file, Path::new("node.toml"));
        assert!(e.starts_with("key \"max-memory\" in the config file node.toml: invalid value 'lots'"), "{e}");
        let e = from(&[], "insecure = \"yes\"").expect_err("not a bool");
        assert!(e.contains("\"insecure\"") && e.contains("expected true or false"), "{e}");
        let e = from(&[], "max-memory = [1]").expect_err("an array");
        assert!(e.contains("found array"), "{e}");
        let e = from(&[], "config = \"other.toml\"").expect_err("config is not a setting");
        assert!(e.contains("no such setting"), "{e}");
        assert!(from(&[], "data-dir = ").expect_err("bad toml").contains("not valid TOML"));
    }

    #[test]
    fn the_effective_configuration_names_each_source_and_reads_back() {
        let c = cmd();
        let file = from(&["--data-dir", "d1"], "max-memory = 1024\n").expect("read");
        let args: Vec<OsString> =
            ["serve", "--data-dir", "d1"].into_iter().map(OsString::from).chain(file.args).collect();
        let m = c.clone().try_get_matches_from(args).expect("args");
        let printed = effective(&c, &m, &file.keys);
        assert!(printed.contains("data-dir = \"d1\"  # flag"), "{printed}");
        assert!(printed.contains("max-memory = 1024  # file"), "{printed}");
        assert!(printed.contains("listen = \"127.0.0.1:1\"  # default"), "{printed}");
        assert!(printed.contains("insecure = false  # default"), "{printed}");
        // What it prints is a config file that gives the same settings.
        let again = from(&[], &printed).expect("reads back");
        assert!(again.args.contains(&OsString::from("--data-dir=d1")), "{:?}", again.args);
        assert!(again.args.contains(&OsString::from("--max-memory=1024")), "{:?}", again.args);
    }
}
