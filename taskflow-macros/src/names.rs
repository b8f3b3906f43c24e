//! The name rules of `taskflow-rules`, worded as compile errors.

/// Why a task or step name is invalid; `None` if valid.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    taskflow_rules::check_name(name)
        .err()
        .map(|p| p.describe(name))
}

/// Why an event name is invalid, with how to fix it in `#[events]`; `None` if valid.
pub(crate) fn event_name_problem(name: &str) -> Option<String> {
    use taskflow_rules::EventNameProblem;
    let problem = taskflow_rules::check_event_name(name).err()?;
    let fix = match problem {
        EventNameProblem::Reserved(_) => "rename the variant or set #[event(name = \"...\")]",
        EventNameProblem::ReservedPrefix(_) => "choose another name with #[event(name = \"...\")]",
        EventNameProblem::Grammar(_) => "set #[event(name = \"...\")]",
    };
    Some(format!("{}; {fix}", problem.describe(name)))
}

/// Why a signal name is invalid, with how to fix it in `#[signals]`; `None` if valid.
pub(crate) fn signal_name_problem(name: &str) -> Option<String> {
    use taskflow_rules::SignalNameProblem;
    let problem = taskflow_rules::check_signal_name(name).err()?;
    let fix = match problem {
        SignalNameProblem::Reserved(_) => "rename the variant or set #[signal(name = \"...\")]",
        SignalNameProblem::Grammar(_) => "set #[signal(name = \"...\")]",
    };
    Some(format!("{}; {fix}", problem.describe(name)))
}
