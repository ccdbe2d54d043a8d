// Package openim is OpenIM's webhook format (https://github.com/openimsdk/open-im-server),
// also callback.OpenIM, and the names of its webhook commands, with
// OpenIM's own spellings:
//
//	d, err := callback.New(callback.Config{URL: "http://app.example:10006/callbackExample", Protocol: callback.OpenIM})
//	r := d.Before(ctx, appID, openim.BeforeSendSingleMsg, body)
//
// The request is OpenIM's: POST <URL>/<command> (one "/" between the URL's
// path and the command, the URL's own query kept), Content-Type
// application/json; charset=utf-8, an operationID header carrying the
// event's ID, and the body byte for byte. OpenIM signs nothing; with a
// Secret the Dispatcher adds Standard Webhooks headers, as it does for
// AppCommand, which package receiver verifies (an App backend written for
// OpenIM ignores them).
//
// The answer is OpenIM's: {"actionCode", "errCode", "errMsg", "errDlt",
// "nextCode", ...}. The event is refused only when actionCode is 0 and
// nextCode is 1 (OpenIM's rule: {"actionCode":1,"nextCode":1} allows), with
// errCode and errMsg as the Response's Code and Msg; every other answer
// allows. Hook-specific fields that are not null (beforeMsgModify's
// content, ex, atUserIDList, senderFaceURL, ...; a push hook's userIDList;
// beforeUpdateUserInfo's nickName, faceURL, ex) are the App's changes:
// the Response's Data is then the whole answer (so is it when errDlt is
// not empty), and Response.Apply applies them to the event's body.
//
// Failures differ from OpenIM on purpose. An answer that is not JSON is a
// failed callback (callback.ErrBadAnswer), as in OpenIM, but Before then
// fails open unless the command's Rule has FailClosed: the failedContinue
// setting as OpenIM's users expect it, which OpenIM 3.7 and later parse
// and never read (their issue #3808), refusing on every failure. OpenIM
// reads the answer whatever its HTTP status; imcallback counts any status
// but 2xx as a failed callback, even with a JSON answer: Before applies
// its failure policy (a deny sent with status 500 is not a deny), and
// After retries 408, 429 and 5xx and dead-letters other statuses. OpenIM's
// after-hooks are dropped when its 100-slot memory queue is full; After's
// are queued, retried and, undelivered, dead-lettered.
//
// OpenIM's three message after-hooks that add ?key=<base64 of sendID,
// recvID and groupID> to the URL (afterSendSingleMsg, afterSendGroupMsg,
// afterMsgSaveDB) are sent without it: an App backend that reads the key
// must read those IDs from the body.
package openim

// OpenIM's webhook commands: "callback" + the hook's key in OpenIM's
// webhooks.yml + "Command", except where noted. A Dispatcher sends any
// non-empty command; these are the ones OpenIM's App backends know.
const (
	// BeforeUserRegister is a Before command: users are to be registered.
	BeforeUserRegister = "callbackBeforeUserRegisterCommand"
	// AfterUserRegister is an After command: users were registered.
	AfterUserRegister = "callbackAfterUserRegisterCommand"
	// BeforeUpdateUserInfo is a Before command: a user's profile is to
	// change. The App may answer nickName, faceURL and ex.
	BeforeUpdateUserInfo = "callbackBeforeUpdateUserInfoCommand"
	// AfterUpdateUserInfo is an After command: a user's profile changed.
	AfterUpdateUserInfo = "callbackAfterUpdateUserInfoCommand"
	// BeforeUpdateUserInfoEx is a Before command: a user's profile is to
	// change, field by field.
	BeforeUpdateUserInfoEx = "callbackBeforeUpdateUserInfoExCommand"
	// AfterUpdateUserInfoEx is an After command: a user's profile changed,
	// field by field.
	AfterUpdateUserInfoEx = "callbackAfterUpdateUserInfoExCommand"

	// BeforeAddFriend is a Before command: a user asks to add a friend.
	BeforeAddFriend = "callbackBeforeAddFriendCommand"
	// AfterAddFriend is an After command: a friend request was made.
	AfterAddFriend = "callbackAfterAddFriendCommand"
	// BeforeAddFriendAgree is a Before command: a friend request is to be
	// accepted.
	BeforeAddFriendAgree = "callbackBeforeAddFriendAgreeCommand"
	// AfterAddFriendAgree is an After command: a friend request was
	// accepted.
	AfterAddFriendAgree = "callbackAfterAddFriendAgreeCommand"
	// AfterDeleteFriend is an After command: a friendship was removed.
	AfterDeleteFriend = "callbackAfterDeleteFriendCommand"
	// BeforeSetFriendRemark is a Before command: a friend's remark is to
	// change.
	BeforeSetFriendRemark = "callbackBeforeSetFriendRemarkCommand"
	// AfterSetFriendRemark is an After command: a friend's remark changed.
	AfterSetFriendRemark = "callbackAfterSetFriendRemarkCommand"
	// BeforeAddBlack is a Before command: a user is to be blacklisted.
	BeforeAddBlack = "callbackBeforeAddBlackCommand"
	// AfterRemoveBlack is an After command: a user left a blacklist.
	AfterRemoveBlack = "callbackAfterRemoveBlackCommand"
	// BeforeImportFriends is a Before command: friends are to be imported.
	BeforeImportFriends = "callbackBeforeImportFriendsCommand"
	// AfterImportFriends is an After command: friends were imported.
	AfterImportFriends = "callbackAfterImportFriendsCommand"

	// BeforeCreateGroup is a Before command: a group is to be created.
	// The App may override group fields.
	BeforeCreateGroup = "callbackBeforeCreateGroupCommand"
	// AfterCreateGroup is an After command: a group was created.
	AfterCreateGroup = "callbackAfterCreateGroupCommand"
	// BeforeMembersJoinGroup is a Before command, hook
	// beforeMemberJoinGroup (its command says "Members"): users are to
	// become group members.
	BeforeMembersJoinGroup = "callbackBeforeMembersJoinGroupCommand"
	// BeforeInviteJoinGroup is a Before command, hook
	// beforeInviteUserToGroup: users are to be invited into a group.
	BeforeInviteJoinGroup = "callbackBeforeInviteJoinGroupCommand"
	// BeforeJoinGroup is a Before command, hook beforeApplyJoinGroup: a
	// user asks to join a group.
	BeforeJoinGroup = "callbackBeforeJoinGroupCommand"
	// AfterJoinGroup is an After command: a user joined a group.
	AfterJoinGroup = "callbackAfterJoinGroupCommand"
	// AfterQuitGroup is an After command: a user left a group.
	AfterQuitGroup = "callbackAfterQuitGroupCommand"
	// AfterKickGroup is an After command, hook afterKickGroupMember:
	// members were removed from a group.
	AfterKickGroup = "callbackAfterKickGroupCommand"
	// AfterDisMissGroup is an After command, hook afterDismissGroup: a
	// group was dissolved. The capital M is OpenIM's.
	AfterDisMissGroup = "callbackAfterDisMissGroupCommand"
	// AfterTransferGroupOwner is an After command: a group's owner changed.
	AfterTransferGroupOwner = "callbackAfterTransferGroupOwnerCommand"
	// BeforeSetGroupMemberInfo is a Before command: a member's details are
	// to change.
	BeforeSetGroupMemberInfo = "callbackBeforeSetGroupMemberInfoCommand"
	// AfterSetGroupMemberInfo is an After command: a member's details
	// changed.
	AfterSetGroupMemberInfo = "callbackAfterSetGroupMemberInfoCommand"
	// BeforeSetGroupInfo is a Before command: a group's details are to
	// change.
	BeforeSetGroupInfo = "callbackBeforeSetGroupInfoCommand"
	// AfterSetGroupInfo is an After command: a group's details changed.
	AfterSetGroupInfo = "callbackAfterSetGroupInfoCommand"
	// BeforeSetGroupInfoEx is a Before command: a group's details are to
	// change, field by field.
	BeforeSetGroupInfoEx = "callbackBeforeSetGroupInfoExCommand"
	// AfterSetGroupInfoEx is an After command: a group's details changed,
	// field by field.
	AfterSetGroupInfoEx = "callbackAfterSetGroupInfoExCommand"

	// BeforeSendSingleMsg is a Before command: a one-to-one message is to
	// be sent.
	BeforeSendSingleMsg = "callbackBeforeSendSingleMsgCommand"
	// AfterSendSingleMsg is an After command: a one-to-one message was
	// sent.
	AfterSendSingleMsg = "callbackAfterSendSingleMsgCommand"
	// BeforeSendGroupMsg is a Before command: a group message is to be
	// sent.
	BeforeSendGroupMsg = "callbackBeforeSendGroupMsgCommand"
	// AfterSendGroupMsg is an After command: a group message was sent.
	AfterSendGroupMsg = "callbackAfterSendGroupMsgCommand"
	// BeforeMsgModify is a Before command: a message is to be stored. The
	// App may answer content, ex, atUserIDList, senderFaceURL and other
	// fields to change it.
	BeforeMsgModify = "callbackBeforeMsgModifyCommand"
	// AfterMsgSaveDB is an After command: a message was stored.
	AfterMsgSaveDB = "callbackAfterMsgSaveDBCommand"
	// AfterSingleMsgRead is an After command: one-to-one messages were
	// read.
	AfterSingleMsgRead = "callbackAfterSingleMsgReadCommand"
	// AfterGroupMsgRead is an After command: group messages were read.
	AfterGroupMsgRead = "callbackAfterGroupMsgReadCommand"
	// AfterRevokeMsg is an After command, hook afterRevokeMsg: a message
	// was recalled. Its value, "callbackBeforeAfterMsgCommand", is OpenIM's
	// own, kept so that OpenIM's App backends keep working.
	AfterRevokeMsg = "callbackBeforeAfterMsgCommand"

	// BeforeOnlinePush is a Before command: a one-to-one message is to be
	// pushed to online users. The App may answer userIDList.
	BeforeOnlinePush = "callbackBeforeOnlinePushCommand"
	// BeforeGroupOnlinePush is a Before command: a group message is to be
	// pushed to online users. The App may answer userIDList.
	BeforeGroupOnlinePush = "callbackBeforeGroupOnlinePushCommand"
	// BeforeOfflinePush is a Before command: a message is to be pushed to
	// offline users. The App may answer userIDList and offlinePushInfo.
	BeforeOfflinePush = "callbackBeforeOfflinePushCommand"
	// AfterUserOnline is an After command: a user connected.
	AfterUserOnline = "callbackAfterUserOnlineCommand"
	// AfterUserOffline is an After command: a user disconnected.
	AfterUserOffline = "callbackAfterUserOfflineCommand"
	// AfterUserKickOff is an After command: a user was forced offline.
	AfterUserKickOff = "callbackAfterUserKickOffCommand"
)
