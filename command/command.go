// Package command names the callback commands of the AppCommand protocol
// (callback.AppCommand, the default), the command query parameter of
// POST {URL}?appId=..&command=.. that App backends route by:
//
//	r := d.Before(ctx, appID, command.MessageSendBefore, body)
//
// They are the commands of the Java IM design imcallback started from,
// with its spellings. A Dispatcher sends any non-empty command; these are
// the ones its App backends know. Tencent Cloud IM's are in package
// tencent, OpenIM's in package openim.
package command

const (
	// MessageSendBefore is a Before command: a user sends a message.
	MessageSendBefore = "message.send.before"
	// FriendAddBefore is a Before command: a user asks to add a friend.
	FriendAddBefore = "friend.add.before"
	// FriendUpdateBefore is a Before command: a user changes a friend's
	// details (remark, tags).
	FriendUpdateBefore = "friend.update.before"
	// GroupMemberAddBefore is a Before command: members are to be added to
	// a group. The App backend may answer a rewritten member list in data.
	GroupMemberAddBefore = "group.member.add.before"

	// MessageSendAfter is an After command: a message was sent.
	MessageSendAfter = "message.send.after"
	// UserModifyAfter is an After command: a user changed their profile.
	UserModifyAfter = "user.modify.after"
	// FriendAddAfter is an After command: a friendship was made.
	FriendAddAfter = "friend.add.after"
	// FriendUpdateAfter is an After command: a friend's details changed.
	FriendUpdateAfter = "friend.update.after"
	// FriendDeleteAfter is an After command: a friendship was removed.
	FriendDeleteAfter = "friend.delete.after"
	// BlackAddAfter is an After command: a user was added to a blacklist.
	BlackAddAfter = "black.add.after"
	// BlackDeleteAfter is an After command: a user was removed from a
	// blacklist. Its value, "black.delete" without ".after", is the seed
	// design's, kept so that existing App backends keep working.
	BlackDeleteAfter = "black.delete"
	// GroupCreateAfter is an After command: a group was created.
	GroupCreateAfter = "group.create.after"
	// GroupUpdateAfter is an After command: a group's details changed.
	GroupUpdateAfter = "group.update.after"
	// GroupDestroyAfter is an After command: a group was dissolved. Its
	// value, "group.destory.after" (sic), is the seed design's spelling,
	// kept so that existing App backends keep working.
	GroupDestroyAfter = "group.destory.after"
	// GroupTransferAfter is an After command: a group's owner changed.
	GroupTransferAfter = "group.transfer.after"
	// GroupMemberAddAfter is an After command: members joined a group.
	GroupMemberAddAfter = "group.member.add.after"
	// GroupMemberDeleteAfter is an After command: members left or were
	// removed from a group.
	GroupMemberDeleteAfter = "group.member.delete.after"
)
