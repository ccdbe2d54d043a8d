// Package tencent is Tencent Cloud IM's third-party callback format
// (Protocol, also callback.Tencent, implemented through package format)
// and the names of its commands, for a Dispatcher or an app set to it;
// each is sent as the CallbackCommand query parameter (Tencent's bodies
// repeat it as "CallbackCommand"):
//
//	r := d.Before(ctx, sdkAppID, tencent.C2CBeforeSendMsg, body)
//
// A Dispatcher sends any non-empty command; these are the ones Tencent
// documents and imcallback's tests and examples use.
package tencent

const (
	// SnsPrevFriendAdd is a Before command: a user asks to add a
	// friend.
	SnsPrevFriendAdd = "Sns.CallbackPrevFriendAdd"
	// SnsPrevFriendResponse is a Before command: a user answers a
	// friend request.
	SnsPrevFriendResponse = "Sns.CallbackPrevFriendResponse"
	// C2CBeforeSendMsg is a Before command: a one-to-one message is
	// to be sent. The App backend may rewrite MsgBody and CloudCustomData.
	C2CBeforeSendMsg = "C2C.CallbackBeforeSendMsg"
	// GroupBeforeCreateGroup is a Before command: a group is to be
	// created.
	GroupBeforeCreateGroup = "Group.CallbackBeforeCreateGroup"
	// GroupBeforeApplyJoinGroup is a Before command: a user asks to
	// join a group.
	GroupBeforeApplyJoinGroup = "Group.CallbackBeforeApplyJoinGroup"
	// GroupBeforeInviteJoinGroup is a Before command: users are
	// invited into a group. The App backend may refuse some of them with
	// RefusedMembers_Account.
	GroupBeforeInviteJoinGroup = "Group.CallbackBeforeInviteJoinGroup"
	// GroupBeforeSendMsg is a Before command: a group message is to
	// be sent. The App backend may rewrite MsgBody and CloudCustomData.
	GroupBeforeSendMsg = "Group.CallbackBeforeSendMsg"
	// GroupBeforeCreateTopic is a Before command: a topic is to be
	// created in a community group.
	GroupBeforeCreateTopic = "Group.CallbackBeforeCreateTopic"

	// StateChange is an After command: a user went online or offline.
	StateChange = "State.StateChange"
	// ProfilePortraitSet is an After command: a user changed their
	// profile.
	ProfilePortraitSet = "Profile.CallbackPortraitSet"
	// SnsFriendAdd is an After command: a friendship was made.
	SnsFriendAdd = "Sns.CallbackFriendAdd"
	// SnsFriendDelete is an After command: a friendship was removed.
	SnsFriendDelete = "Sns.CallbackFriendDelete"
	// SnsBlackListAdd is an After command: users were blacklisted.
	SnsBlackListAdd = "Sns.CallbackBlackListAdd"
	// SnsBlackListDelete is an After command: users were removed
	// from a blacklist.
	SnsBlackListDelete = "Sns.CallbackBlackListDelete"
	// C2CAfterSendMsg is an After command: a one-to-one message was
	// sent.
	C2CAfterSendMsg = "C2C.CallbackAfterSendMsg"
	// C2CAfterMsgReport is an After command: one-to-one messages
	// were read (read receipt).
	C2CAfterMsgReport = "C2C.CallbackAfterMsgReport"
	// C2CAfterMsgWithDraw is an After command: a one-to-one message
	// was recalled.
	C2CAfterMsgWithDraw = "C2C.CallbackAfterMsgWithDraw"
	// GroupAfterCreateGroup is an After command: a group was created.
	GroupAfterCreateGroup = "Group.CallbackAfterCreateGroup"
	// GroupAfterNewMemberJoin is an After command: members joined a
	// group.
	GroupAfterNewMemberJoin = "Group.CallbackAfterNewMemberJoin"
	// GroupAfterMemberExit is an After command: members left or were
	// removed from a group.
	GroupAfterMemberExit = "Group.CallbackAfterMemberExit"
	// GroupAfterSendMsg is an After command: a group message was
	// sent.
	GroupAfterSendMsg = "Group.CallbackAfterSendMsg"
	// GroupAfterGroupFull is an After command: a group reached its
	// member limit.
	GroupAfterGroupFull = "Group.CallbackAfterGroupFull"
	// GroupAfterGroupDestroyed is an After command: a group was
	// dissolved.
	GroupAfterGroupDestroyed = "Group.CallbackAfterGroupDestroyed"
	// GroupAfterGroupInfoChanged is an After command: a group's
	// details changed.
	GroupAfterGroupInfoChanged = "Group.CallbackAfterGroupInfoChanged"
	// GroupAfterChangeGroupOwner is an After command: a group's
	// owner changed.
	GroupAfterChangeGroupOwner = "Group.CallbackAfterChangeGroupOwner"
)
