//! Every `trnkit-stage` command line the staging Jobs carry parses with `trnkit-stage`'s own
//! argument types into what the typed command says.

use clap::Parser;

use super::{StageArgv, StageCommand, TokenizeArgv};
use crate::cli::{Global, dataset, tokenize};

/// `trnkit-stage`'s command line, as `src/bin/trnkit-stage.rs` declares it.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    _global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Stage(tokenize::StageArgs),
    Tokenize(tokenize::Args),
    #[command(subcommand)]
    Dataset(dataset::Command),
}

fn parse(command: &StageCommand) -> Command {
    let argv = command.argv();
    assert_eq!(argv[0], "trnkit-stage");
    Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?} does not parse: {e}"))
        .command
}

#[test]
fn typed_commands_parse_back_into_the_same_arguments() {
    let tokenize = TokenizeArgv {
        inputs: vec!["/shared/a.jsonl".to_owned(), "/shared/b.jsonl".to_owned()],
        output_prefix: "/shared/data/x.shard-$(JOB_COMPLETION_INDEX)-of-4".to_owned(),
        tokenizer_dir: "/shared/tok".to_owned(),
        mode: pipeline::Mode::Megatron,
        workers: 3,
        json_keys: vec!["text".to_owned(), "title".to_owned()],
        append_eod: true,
        need_pad_id: false,
        shard: Some("2/4".to_owned()),
    };
    let Command::Tokenize(args) = parse(&StageCommand::Tokenize(tokenize.clone())) else {
        panic!("not tokenize");
    };
    assert_eq!(args.input, tokenize.inputs);
    assert_eq!(
        args.output_prefix.display().to_string(),
        tokenize.output_prefix
    );
    assert_eq!(args.tokenizer.unwrap().display().to_string(), "/shared/tok");
    assert_eq!(args.mode, Some(tokenize::ModeArg::Megatron));
    assert_eq!(args.workers, Some(3));
    assert_eq!(args.json_keys, tokenize.json_keys);
    assert!(args.append_eod && !args.need_pad_id && args.no_progress && !args.wait);
    assert_eq!(args.shard.unwrap().to_string(), "2/4");

    let merge = StageCommand::Merge {
        output: "/shared/data/x_text_document".to_owned(),
        parts: vec!["/shared/p0".to_owned(), "/shared/p1".to_owned()],
        remove_parts: true,
    };
    let Command::Dataset(dataset::Command::Merge {
        output,
        parts,
        remove_parts,
        wait,
    }) = parse(&merge)
    else {
        panic!("not merge");
    };
    assert_eq!(output.display().to_string(), "/shared/data/x_text_document");
    assert_eq!(parts.len(), 2);
    assert!(remove_parts && !wait);

    let stage = StageArgv {
        target: "/shared".to_owned(),
        tokenizer: "meta-llama/Llama-2-7b-hf".to_owned(),
        tokenizer_revision: "main".to_owned(),
        tokenizer_dir_name: "llama7b_tokenizer".to_owned(),
        dataset: "togethercomputer/RedPajama-Data-1T-Sample".to_owned(),
        dataset_revision: "v1".to_owned(),
        merge_to: "redpajama_sample.jsonl".to_owned(),
    };
    let Command::Stage(args) = parse(&StageCommand::Stage(stage.clone())) else {
        panic!("not stage");
    };
    assert_eq!(args.tokenizer.as_deref(), Some(stage.tokenizer.as_str()));
    assert_eq!(args.dataset, [stage.dataset]);
    assert_eq!(args.dataset_revision, "v1");
    assert_eq!(
        args.merge_to.unwrap().display().to_string(),
        "redpajama_sample.jsonl"
    );

    let Command::Dataset(dataset::Command::Fingerprint {
        tokenizer,
        checkout,
        prefixes,
    }) = parse(&StageCommand::Fingerprint {
        tokenizer: Some("/shared/tok".to_owned()),
        checkout: Some("/shared/code".to_owned()),
        prefixes: vec!["/shared/a".to_owned()],
    })
    else {
        panic!("not fingerprint");
    };
    assert_eq!(prefixes.len(), 1);
    assert_eq!(tokenizer.unwrap().display().to_string(), "/shared/tok");
    assert_eq!(checkout.unwrap().display().to_string(), "/shared/code");
}
