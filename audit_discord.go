package vectabase

// ActorDiscord is the actor type of an action taken through the Discord
// bot: ActorID is the Discord user id of the member who ran the command.
// Such actions carry no Vectabase session, so they are kept apart from
// ActorUser.
const ActorDiscord = "discord"
